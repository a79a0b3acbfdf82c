//! Image references: `nginx`, `ghcr.io/org/api:v1.2.3`, `localhost:5000/app@sha256:...`.
//!
//! Parsed and normalized the way Docker and containerd do it (distribution/reference), because a
//! user writes `nginx` in one place and `docker.io/library/nginx` in another and means one image:
//! the registry we query, the credentials we pick and the manifest entries we rewrite all key on
//! the normalized name.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// Docker Hub's canonical domain.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with port when given: `ghcr.io`, `127.0.0.1:5000`, `docker.io`.
    pub domain: String,
    /// Repository path inside the registry: `org/api`, `library/nginx`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Why a string is not an image reference. Messages follow distribution/reference's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("repository name must have at least one component")]
    NameEmpty,
    #[error("repository path must not be more than 255 characters")]
    NameTooLong,
    #[error("repository name must be lowercase")]
    NameContainsUppercase,
    #[error("invalid reference format")]
    InvalidFormat,
    #[error("invalid digest format")]
    DigestInvalidFormat,
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
    #[error("cannot specify 64-byte hexadecimal strings as a repository name")]
    HexName,
}

const DOMAIN_COMPONENT: &str = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const PATH_COMPONENT: &str = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";

static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let host = format!(r"(?:{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])");
    let domain = format!(r"{host}(?::[0-9]+)?");
    let path = format!(r"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*");
    let tag = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
    let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    // As in distribution/reference, the domain is optional and tried first: in `foo/bar`,
    // `foo` is the domain. Normalization (`Reference::parse`) decides domains by Docker's rule
    // before this grammar sees the name.
    Regex::new(&format!(
        r"^(?P<name>(?:(?P<domain>{domain})/)?(?P<path>{path}))(?::(?P<tag>{tag}))?(?:@(?P<digest>{digest}))?$"
    ))
    .expect("reference grammar")
});

/// Whether `tag` is a tag the distribution spec allows (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
/// Anything else in a tag list is a registry's bug or an attack, and is never written.
pub fn is_valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_')
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Reference {
    /// Parses a reference as Docker does, filling in `docker.io` and `library/`:
    /// `nginx` becomes `docker.io/library/nginx`.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ReferenceError::HexName);
        }
        let (domain, remainder) = split_domain(text);
        let name_end = remainder.find(['@', ':']).unwrap_or(remainder.len());
        // Only the repository path must be lowercase; a tag may be any case.
        if remainder[..name_end]
            .bytes()
            .any(|b| b.is_ascii_uppercase())
        {
            return Err(ReferenceError::NameContainsUppercase);
        }
        Reference::parse_exact(&format!("{domain}/{remainder}"))
    }

    /// Parses a fully qualified reference without normalization.
    pub fn parse_exact(text: &str) -> Result<Reference, ReferenceError> {
        let Some(caps) = REFERENCE.captures(text) else {
            if text.is_empty() {
                return Err(ReferenceError::NameEmpty);
            }
            if REFERENCE.is_match(&text.to_lowercase()) {
                return Err(ReferenceError::NameContainsUppercase);
            }
            return Err(ReferenceError::InvalidFormat);
        };
        // The limit applies to the repository path; the domain does not count.
        if caps["path"].len() > 255 {
            return Err(ReferenceError::NameTooLong);
        }
        let digest = caps.name("digest").map(|m| m.as_str().to_string());
        if let Some(d) = &digest {
            validate_digest(d)?;
        }
        let text = |group| caps.name(group).map(|m| m.as_str().to_string());
        Ok(Reference {
            domain: text("domain").unwrap_or_default(),
            path: text("path").unwrap_or_default(),
            tag: text("tag"),
            digest,
        })
    }

    /// `domain/path`, the name a registry and a manifest know the image by.
    pub fn repository(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// The short form people type: `nginx` for `docker.io/library/nginx`,
    /// `org/app` for `docker.io/org/app`, the full name elsewhere.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DOCKER_HUB {
            self.path
                .strip_prefix("library/")
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        }
    }

    /// The registry host requests go to, with Docker Hub's aliases folded into one.
    pub fn registry(&self) -> &str {
        canonical_registry(&self.domain)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first component is a registry when it has a `.` or `:`, is `localhost`,
/// or has an uppercase letter (repository paths cannot).
fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn split_domain(name: &str) -> (&str, String) {
    let (mut domain, remainder) = match name.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (first, rest.to_string()),
        _ => (DOCKER_HUB, name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = DOCKER_HUB;
    }
    if domain == DOCKER_HUB && !remainder.contains('/') {
        return (domain, format!("library/{remainder}"));
    }
    (domain, remainder)
}

/// Whether `digest` is one the distribution spec allows: `sha256:`, `sha384:` or `sha512:` with
/// that many lowercase hex digits. A digest from a registry is checked with this before it is
/// used in a request or written into a file.
pub fn is_valid_digest(digest: &str) -> bool {
    validate_digest(digest).is_ok()
        && digest
            .bytes()
            .skip_while(|b| *b != b':')
            .skip(1)
            .all(|b| b.is_ascii_hexdigit())
}

fn validate_digest(digest: &str) -> Result<(), ReferenceError> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or(ReferenceError::DigestInvalidFormat)?;
    let expected = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ReferenceError::DigestUnsupported),
    };
    if hex.len() != expected || hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::DigestInvalidFormat);
    }
    Ok(())
}

/// `latest@sha256:<64 hex>` as `latest@sha256:<12 hex>`: a digest as commit subjects and
/// `status` show it (the full one is in the commit body and `status --output json`).
pub fn short_digests(value: &str) -> String {
    match value.split_once('@') {
        Some((tag, digest)) => match digest.split_once(':') {
            Some((algorithm, hex)) if hex.len() > 12 && hex.is_char_boundary(12) => {
                format!("{tag}@{algorithm}:{}", &hex[..12])
            }
            _ => value.to_string(),
        },
        None => value.to_string(),
    }
}

/// Folds Docker Hub's many names (`docker.io`, `index.docker.io`, `registry-1.docker.io`, and
/// `https://index.docker.io/v1/` as config.json spells it) into `docker.io`; other hosts are
/// returned without scheme or trailing path.
pub fn canonical_registry(host: &str) -> &str {
    let bare = host
        .strip_prefix("https://")
        .or_else(|| host.strip_prefix("http://"))
        .unwrap_or(host);
    let bare = bare.split('/').next().unwrap_or(bare);
    match bare {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB
        }
        other => other,
    }
}

/// A platform to pick from a multi-arch image index: `linux/amd64`, `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        match parts.as_slice() {
            [os, arch] | [os, arch, _]
                if valid(os) && valid(arch) && parts.get(2).is_none_or(|v| valid(v)) =>
            {
                Ok(Platform {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: parts.get(2).map(|v| v.to_string()),
                })
            }
            _ => Err(format!(
                "`{text}` is not a platform: write os/architecture[/variant], e.g. linux/amd64"
            )),
        }
    }
}

impl Default for Platform {
    /// `linux/amd64`: what most clusters run, and never the platform of the machine we run on.
    fn default() -> Platform {
        Platform::parse("linux/amd64").expect("valid")
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_names_are_normalized() {
        let r = Reference::parse("nginx").unwrap();
        assert_eq!(r.repository(), "docker.io/library/nginx");
        assert_eq!(r.familiar_repository(), "nginx");
        let r = Reference::parse("index.docker.io/org/app:1.0").unwrap();
        assert_eq!(r.repository(), "docker.io/org/app");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.familiar_repository(), "org/app");
    }

    #[test]
    fn registries_with_ports_tags_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:5000/team/app:v1@{d}")).unwrap();
        assert_eq!(r.domain, "127.0.0.1:5000");
        assert_eq!(r.path, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(
            Reference::parse("localhost/app").unwrap().domain,
            "localhost"
        );
    }

    #[test]
    fn bad_references_say_why() {
        assert_eq!(
            Reference::parse("ghcr.io/Org/app"),
            Err(ReferenceError::NameContainsUppercase)
        );
        assert_eq!(Reference::parse(""), Err(ReferenceError::InvalidFormat));
        assert_eq!(Reference::parse_exact(""), Err(ReferenceError::NameEmpty));
        assert_eq!(
            Reference::parse("app@sha256:abc"),
            Err(ReferenceError::InvalidFormat)
        );
        assert_eq!(
            Reference::parse(&format!("app@md5:{}", "a".repeat(32))),
            Err(ReferenceError::DigestUnsupported)
        );
        assert!(Reference::parse("ghcr.io/org/app:").is_err());
    }

    #[test]
    fn docker_hub_aliases_are_one_registry() {
        for alias in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
        ] {
            assert_eq!(canonical_registry(alias), DOCKER_HUB);
        }
        assert_eq!(canonical_registry("https://ghcr.io"), "ghcr.io");
    }

    #[test]
    fn platforms() {
        assert_eq!(
            Platform::parse("linux/arm64/v8")
                .unwrap()
                .variant
                .as_deref(),
            Some("v8")
        );
        assert_eq!(Platform::default().to_string(), "linux/amd64");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
    }
}
