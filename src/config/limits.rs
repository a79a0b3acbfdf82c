//! The request rate used for a registry whose config sets no `rate_limit`: what the
//! well-known registries publish, and a default for those that publish nothing.
//!
//! The figures and their sources are listed in docs/operating.md ("Request budgets"). They
//! are deliberately below what each registry allows: the same account or address usually pulls
//! images too, and a registry that says more (`RateLimit-*` headers, a 429) is believed over
//! this table.

/// A registry's default request rate and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnownLimit {
    /// Requests per second.
    pub per_second: f64,
    /// Why, in a few words, for `check` and the log.
    pub source: &'static str,
}

/// For a registry that publishes no limit (a self-hosted distribution, Harbor, Nexus).
pub const UNPUBLISHED: KnownLimit = KnownLimit {
    per_second: 50.0,
    source: "no published limit",
};

/// The default rate for the registry at `host` (canonical: `docker.io` for Docker Hub).
pub fn default_rate(host: &str) -> KnownLimit {
    let host = host.to_ascii_lowercase();
    let host = host.split(':').next().unwrap_or_default();
    if host == crate::reference::DOCKER_HUB || host == "registry-1.docker.io" {
        // Tag lists and HEADs are not pulls; pulls (manifest GETs) are 10 an hour without an
        // account and 100 with one, and the budget headers guard those.
        KnownLimit {
            per_second: 10.0,
            source: "Docker Hub (pulls, which HEADs are not, limited separately)",
        }
    } else if host == "quay.io" {
        KnownLimit {
            per_second: 5.0,
            source: "Quay.io: a few requests per second per address",
        }
    } else if host == "ghcr.io" {
        KnownLimit {
            per_second: 10.0,
            source: "GitHub Container Registry publishes no number",
        }
    } else if host.contains(".dkr.ecr.") && host.ends_with(".amazonaws.com") {
        KnownLimit {
            per_second: 50.0,
            source: "Amazon ECR: per-action quotas of hundreds or more per second",
        }
    } else if host == "gcr.io" || host.ends_with(".gcr.io") || host.ends_with("-docker.pkg.dev") {
        KnownLimit {
            per_second: 10.0,
            source: "Artifact Registry: 60,000 a minute per project and region, shared with its pulls",
        }
    } else if host.ends_with(".azurecr.io") {
        KnownLimit {
            per_second: 8.0,
            source: "Azure Container Registry Basic: 1,000 reads a minute",
        }
    } else {
        UNPUBLISHED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_hosts() {
        assert_eq!(default_rate("docker.io").per_second, 10.0);
        assert_eq!(default_rate("quay.io").per_second, 5.0);
        assert_eq!(
            default_rate("123456789012.dkr.ecr.eu-west-1.amazonaws.com").per_second,
            50.0
        );
        assert_eq!(default_rate("europe-docker.pkg.dev").per_second, 10.0);
        assert_eq!(default_rate("eu.gcr.io").per_second, 10.0);
        assert_eq!(default_rate("myreg.azurecr.io").per_second, 8.0);
        assert_eq!(default_rate("127.0.0.1:5000"), UNPUBLISHED);
        assert_eq!(default_rate("registry.example.com"), UNPUBLISHED);
    }
}
