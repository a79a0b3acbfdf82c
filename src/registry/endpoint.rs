//! Where and how to reach one registry ([`Endpoint`], from its config section or a bare host)
//! and how its client behaves ([`Tuning`]: retries, bounds, the share of the rate a replica
//! takes). Settings only: the client that uses them is [`super::client`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::config::{self, CredentialRef};
use crate::reference::{DOCKER_HUB, canonical_registry};

/// Where and how to reach one registry.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The config's name for it, or the host for registries the config does not list.
    pub name: String,
    /// Canonical host (`docker.io` for Docker Hub), used to look up credentials.
    pub host: String,
    /// `https://ghcr.io`, without trailing slash.
    pub base_url: String,
    pub credentials: Option<CredentialRef>,
    /// The credentials are a cloud's, implied by the host rather than written: when the
    /// cloud's chain finds nothing here, the registry is read anonymously.
    pub credentials_implied: bool,
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    /// Requests per second.
    pub rate_limit: f64,
    /// How long a resolved credential is used before it is read from its source again.
    pub credentials_ttl: Duration,
}

impl Endpoint {
    pub fn from_config(r: &config::Registry) -> Endpoint {
        Endpoint {
            name: r.name.clone(),
            host: r.prefix.clone(),
            base_url: r.api_url.trim_end_matches('/').to_string(),
            credentials: r.credentials.clone(),
            credentials_implied: r.credentials_implied,
            insecure: r.insecure,
            ca_file: r.ca_file.clone(),
            rate_limit: r.rate_limit,
            credentials_ttl: r.credentials_ttl,
        }
    }

    /// A registry the config does not list: over https at the default rate, anonymous unless
    /// its host implies how to sign in (an ECR host: AWS credentials).
    pub fn anonymous(host: &str) -> Endpoint {
        let host = canonical_registry(host).to_string();
        let rate_limit = crate::config::limits::default_rate(&host).per_second;
        let base_url = if host == DOCKER_HUB {
            "https://registry-1.docker.io".to_string()
        } else {
            format!("https://{host}")
        };
        Endpoint {
            name: host.clone(),
            credentials: CredentialRef::implied_by_host(&host),
            credentials_implied: true,
            host,
            base_url,
            insecure: false,
            ca_file: None,
            rate_limit,
            credentials_ttl: config::Registry::DEFAULT_CREDENTIALS_TTL,
        }
    }
}

/// Retry and politeness bounds. The defaults suit public registries; tests shorten them.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// First retry delay; doubles each time, with full jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` we wait out inside a request; longer ones fail the request
    /// at once and the registry is left alone until then.
    pub max_retry_after: Duration,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Tags asked for per page.
    pub page_size: u32,
    /// Manifest GETs (what Docker Hub counts as pulls) left unspent from the registry's budget.
    pub budget_reserve: u64,
    /// Largest body accepted, against a misbehaving server.
    pub max_body: usize,
    /// Pages of one tag list followed at most.
    pub max_pages: u32,
    /// Tags of one repository accepted at most; more is an error for that image.
    pub max_tags: usize,
    /// Bytes of one repository's tag list (all pages) accepted at most.
    pub max_tag_list_bytes: usize,
    /// How many replicas share each registry's `rate_limit` (1 outside a cluster): each
    /// request waits for this many of the limiter's slots, so together the replicas stay
    /// within the one budget. Shared with the daemon, which sets it as members come and go.
    pub share: Arc<AtomicU32>,
    /// This replica's id, sent in the User-Agent so a registry's logs tell replicas apart.
    pub replica: Option<String>,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            page_size: 1000,
            budget_reserve: 2,
            max_body: 64 << 20,
            max_pages: 1000,
            max_tags: 100_000,
            max_tag_list_bytes: 16 << 20,
            share: Arc::new(AtomicU32::new(1)),
            replica: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image on an ECR host the config does not list still signs in with AWS
    /// credentials; any other unlisted registry is anonymous.
    #[test]
    fn an_unlisted_ecr_host_signs_in_as_ecr() {
        let ecr = Endpoint::anonymous("123456789012.dkr.ecr.eu-west-1.amazonaws.com");
        assert_eq!(
            ecr.credentials,
            Some(CredentialRef::Aws {
                region: None,
                role: None
            })
        );
        assert_eq!(Endpoint::anonymous("ghcr.io").credentials, None);
    }
}
