//! Manifests and image indexes, OCI and Docker flavours, and the digests that name them.
//!
//! Only the fields we use are read: an index's entries and their platforms, an image's config
//! digest, a config's `created` time, and where the image says it was built from (the
//! `org.opencontainers.image.source` annotation or label, for the links a pull request shows). Everything fetched by digest is checked against that
//! digest, so a corrupted or truncated body is an error rather than a wrong creation time.

// Numbers here come from registries, webhook senders and clocks: no arithmetic that can
// overflow or panic; every operation is checked or saturating.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::reference::Platform;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What we ask registries for: every modern manifest type, so that HEAD returns the digest of
/// the multi-arch index rather than of one platform's image.
pub const ACCEPT: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// A manifest, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Index {
        entries: Vec<IndexEntry>,
        source: Option<String>,
    },
    Image {
        config: String,
        source: Option<String>,
    },
}

/// The annotation (and config label) naming the source repository an image was built from.
pub const SOURCE: &str = "org.opencontainers.image.source";
/// The longest source url kept.
const MAX_SOURCE: usize = 512;

/// A source url an image gives: kept only when it is an http(s) url without credentials, of
/// reasonable length, and with nothing that could break out of a Markdown link.
pub fn checked_source(text: Option<&String>) -> Option<String> {
    let text = text?.trim();
    let url = reqwest::Url::parse(text).ok()?;
    let plain = text.len() <= MAX_SOURCE
        && matches!(url.scheme(), "https" | "http")
        && url.username().is_empty()
        && url.password().is_none()
        && url.host_str().is_some()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "|()<>[]`\"'\\".contains(c));
    plain.then(|| text.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexEntry {
    pub digest: String,
    pub platform: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<RawEntry>>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct RawEntry {
    digest: String,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl RawPlatform {
    fn render(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// Parses a manifest body; `content_type` is the response's header, trusted over the body's
/// own `mediaType` only when the body has none.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    if raw.schema_version == Some(1) {
        return Err(
            "schema 1 manifests are not supported (push the image again with a current client)"
                .into(),
        );
    }
    let media_type = raw
        .media_type
        .as_deref()
        .or(content_type.map(|c| c.split(';').next().unwrap_or(c).trim()))
        .unwrap_or("");
    // Digests from the body go into request paths and into files: only valid ones.
    let check = |d: &str| {
        if crate::reference::is_valid_digest(d) {
            Ok(())
        } else {
            Err(format!(
                "manifest names `{}`, which is not a digest",
                d.escape_debug()
            ))
        }
    };
    for e in raw.manifests.iter().flatten() {
        check(&e.digest)?;
    }
    if let Some(c) = &raw.config {
        check(&c.digest)?;
    }
    let source = checked_source(raw.annotations.as_ref().and_then(|a| a.get(SOURCE)));
    match (media_type, raw.manifests, raw.config) {
        (OCI_INDEX | DOCKER_LIST, Some(entries), _) | ("", Some(entries), None) => {
            Ok(Manifest::Index {
                entries: entries
                    .into_iter()
                    .map(|e| IndexEntry {
                        digest: e.digest,
                        platform: e.platform.map(|p| p.render()),
                    })
                    .collect(),
                source,
            })
        }
        (OCI_MANIFEST | DOCKER_MANIFEST | "", None, Some(config)) => Ok(Manifest::Image {
            config: config.digest,
            source,
        }),
        (other, _, _) => Err(format!("unsupported manifest type `{other}`")),
    }
}

/// The `created` time, platform and source label of an image config blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    pub created: Option<jiff::Timestamp>,
    pub platform: Option<String>,
    pub source: Option<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<RawRuntime>,
}

/// The `config` object of an image config: only its labels are read.
#[derive(Deserialize)]
struct RawRuntime {
    #[serde(default, rename = "Labels")]
    labels: Option<HashMap<String, String>>,
}

pub fn parse_config(body: &[u8]) -> Result<ImageConfig, String> {
    let raw: RawConfig =
        serde_json::from_slice(body).map_err(|e| format!("image config is not valid JSON: {e}"))?;
    let created = match raw.created.as_deref() {
        Some(text) => Some(
            text.parse::<jiff::Timestamp>()
                .map_err(|e| format!("image config `created` is not a time: {e}"))?,
        ),
        None => None,
    };
    let platform = match (raw.os, raw.architecture) {
        (Some(os), Some(arch)) => Some(match raw.variant {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        }),
        _ => None,
    };
    let source = checked_source(
        raw.config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(SOURCE)),
    );
    Ok(ImageConfig {
        created,
        platform,
        source,
    })
}

/// `sha256:<hex>` of `body`.
pub fn sha256_digest(body: &[u8]) -> String {
    format!("sha256:{}", crate::hex::encode(&Sha256::digest(body)))
}

/// Checks that `body` is what `digest` names (sha256, sha384 or sha512; any other digest is
/// refused, since nothing could check it).
pub fn verify(body: &[u8], digest: &str) -> Result<(), String> {
    use crate::hex::encode;
    let actual = match digest.split_once(':') {
        Some(("sha256", _)) => encode(&Sha256::digest(body)),
        Some(("sha384", _)) => encode(&sha2::Sha384::digest(body)),
        Some(("sha512", _)) => encode(&sha2::Sha512::digest(body)),
        _ => return Err(format!("`{digest}` is not a digest this client can check")),
    };
    if digest.split_once(':').map(|(_, h)| h) != Some(actual.as_str()) {
        return Err(format!(
            "content does not match its digest {digest} (truncated or corrupted)"
        ));
    }
    Ok(())
}

/// Whether an index entry's platform (`linux/arm64/v8`) satisfies a wanted platform. A wanted
/// platform without variant accepts any variant.
pub fn platform_matches(entry: &str, wanted: &Platform) -> bool {
    let mut parts = entry.split('/');
    let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
    os == Some(wanted.os.as_str())
        && arch == Some(wanted.architecture.as_str())
        && wanted.variant.as_deref().is_none_or(|v| variant == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_and_images() {
        let (a, b, c) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
            format!("sha256:{}", "c".repeat(64)),
        );
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {{"digest":"{a}","platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"digest":"{b}","platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        );
        let Manifest::Index { entries, source } = parse(index.as_bytes(), None).unwrap() else {
            panic!()
        };
        assert_eq!(source, None);
        assert_eq!(entries[1].platform.as_deref(), Some("linux/arm64/v8"));
        let image = format!(r#"{{"schemaVersion":2,"config":{{"digest":"{c}","mediaType":"x"}}}}"#);
        assert_eq!(
            parse(image.as_bytes(), Some(DOCKER_MANIFEST)).unwrap(),
            Manifest::Image {
                config: c.clone(),
                source: None
            }
        );
        let annotated = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{c}"}},"annotations":{{"org.opencontainers.image.source":"https://github.com/acme/api"}}}}"#
        );
        assert_eq!(
            parse(annotated.as_bytes(), Some(OCI_MANIFEST)).unwrap(),
            Manifest::Image {
                config: c.clone(),
                source: Some("https://github.com/acme/api".into())
            }
        );
        // Digests from the body go into request paths: anything else is refused.
        let sneaky = br#"{"schemaVersion":2,"config":{"digest":"sha256:../../x","mediaType":"x"}}"#;
        assert!(
            parse(sneaky, Some(DOCKER_MANIFEST))
                .unwrap_err()
                .contains("not a digest")
        );
        assert!(parse(b"{\"schemaVersion\":2,\"conf", None).is_err());
        assert!(parse(br#"{"schemaVersion":1,"name":"x"}"#, None).is_err());
    }

    #[test]
    fn configs_and_digests() {
        let c = parse_config(
            br#"{"created":"2026-01-02T03:04:05.123Z","os":"linux","architecture":"amd64"}"#,
        )
        .unwrap();
        assert_eq!(c.created.unwrap().to_string(), "2026-01-02T03:04:05.123Z");
        assert_eq!(c.platform.as_deref(), Some("linux/amd64"));
        assert_eq!(c.source, None);
        let labelled = parse_config(
            br#"{"os":"linux","architecture":"amd64","config":{"Labels":{"org.opencontainers.image.source":"https://gitlab.example/acme/api"}}}"#,
        )
        .unwrap();
        assert_eq!(
            labelled.source.as_deref(),
            Some("https://gitlab.example/acme/api")
        );
        // A source is a link in a pull request: nothing but a plain http(s) url is kept.
        for bad in [
            "javascript:alert(1)",
            "https://user:pass@github.com/a/b",
            "https://github.com/a/b) [click](https://evil.example",
            "https://github.com/a/b|x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert_eq!(checked_source(Some(&bad.to_string())), None, "{bad}");
        }
        let long = format!("https://github.com/{}", "a".repeat(600));
        assert_eq!(checked_source(Some(&long)), None);
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(verify(b"x", &sha256_digest(b"y")).is_err());
        let arm = Platform::parse("linux/arm64").unwrap();
        assert!(platform_matches("linux/arm64/v8", &arm));
        assert!(!platform_matches("linux/amd64", &arm));
        assert!(!platform_matches(
            "linux/arm64",
            &Platform::parse("linux/arm64/v8").unwrap()
        ));
    }
}
