//! Where cosign puts what it attaches to an image, fetched for [`crate::verify`]: the
//! signatures (`.sig`) and attestations (`.att`) of a digest.
//!
//! cosign stores them as an image manifest whose layers are the signed payloads, found in three
//! places: the OCI 1.1 referrers API (`/v2/NAME/referrers/DIGEST`), when the registry offers it;
//! the referrers tag schema's index at the tag `sha256-<hex>` where it does not (what cosign 3
//! and sigstore-js write there); and the tag `sha256-<hex>.sig` (or `.att`) in the image's
//! repository, cosign's classic place. All are read. A referrer's layer is either cosign's
//! classic payload or a Sigstore bundle ([`crate::verify::bundle`]), which holds signatures and
//! attestations alike.
//!
//! Everything here comes from the registry, which may be hostile: digests are checked before
//! they go into a path, sizes are bounded before anything is fetched, and a blob must match
//! its digest. Whether a payload is signed by a trusted key is for the caller to decide.

// Numbers here come from registries: no arithmetic that can overflow or panic.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;

use reqwest::StatusCode;
use serde::Deserialize;

use super::client::{Client, RegistryError};
use super::manifest::{self, OCI_INDEX, OCI_MANIFEST};
use super::metrics::RequestKind;

/// The media types of a Sigstore bundle, as an artifact type and as a layer type.
pub const BUNDLE_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
];

/// Whether `media_type` is a Sigstore bundle's.
pub fn is_bundle(media_type: &str) -> bool {
    BUNDLE_MEDIA_TYPES.contains(&media_type)
}

/// The largest signed payload fetched (a simple-signing payload is a few hundred bytes; an
/// attestation with a full SLSA provenance a few tens of KiB).
pub const MAX_PAYLOAD: u64 = 1 << 20;
/// The most layers (signatures) read from one artifact.
const MAX_LAYERS: usize = 32;
/// The most referrers followed for one digest.
const MAX_REFERRERS: usize = 16;

/// What cosign attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    Signatures,
    Attestations,
}

impl Attached {
    /// The tag suffix cosign uses.
    fn suffix(self) -> &'static str {
        match self {
            Attached::Signatures => "sig",
            Attached::Attestations => "att",
        }
    }

    /// The layer media type of each signed payload.
    pub fn layer_type(self) -> &'static str {
        match self {
            Attached::Signatures => "application/vnd.dev.cosign.simplesigning.v1+json",
            Attached::Attestations => "application/vnd.dsse.envelope.v1+json",
        }
    }
}

/// One signed payload's layer: where it is and what is annotated on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The classic payload's type ([`Attached::layer_type`]), or a Sigstore bundle's.
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawArtifact {
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    #[serde(default)]
    manifests: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    artifact_type: Option<String>,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

impl Client {
    fn v2(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.endpoint().base_url)
    }

    /// The payload layers cosign attached to `digest` in `repository`, from the referrers API
    /// and from cosign's tag. Nothing attached is an empty list, not an error.
    pub async fn attached(
        &self,
        repository: &str,
        digest: &str,
        what: Attached,
    ) -> Result<Vec<Layer>, RegistryError> {
        let Some(hex) = digest
            .strip_prefix("sha256:")
            .filter(|_| crate::reference::is_valid_digest(digest))
        else {
            return Err(self.error_invalid(format!(
                "`{digest}` is not a sha256 digest; cosign names only those"
            )));
        };
        let mut layers = Vec::new();
        for artifact in self.referrers(repository, digest, hex).await? {
            layers.extend(self.artifact_layers(repository, &artifact, what).await?);
        }
        let tag = format!("sha256-{hex}.{}", what.suffix());
        layers.extend(self.artifact_layers(repository, &tag, what).await?);
        layers.dedup_by(|a, b| a.digest == b.digest && a.annotations == b.annotations);
        Ok(layers)
    }

    /// The manifests that refer to `digest`: from the referrers API, or where the registry does
    /// not have it (it answers 404), from the referrers tag schema's index at `sha256-<hex>`.
    async fn referrers(
        &self,
        repository: &str,
        digest: &str,
        hex: &str,
    ) -> Result<Vec<String>, RegistryError> {
        let url = self.v2(&format!("{repository}/referrers/{digest}"));
        let mut reply = self
            .get(RequestKind::ManifestGet, &url, repository, &[OCI_INDEX])
            .await?;
        let mut source = format!("referrers of {repository}@{digest}");
        if matches!(
            reply.status,
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::BAD_REQUEST
        ) {
            let tag = format!("sha256-{hex}");
            let url = self.v2(&format!("{repository}/manifests/{tag}"));
            reply = self
                .get(RequestKind::ManifestGet, &url, repository, &[OCI_INDEX])
                .await?;
            if reply.status == StatusCode::NOT_FOUND {
                return Ok(Vec::new());
            }
            source = format!("the referrers index {repository}:{tag}");
        }
        if !reply.status.is_success() {
            return Err(self.error_invalid(format!(
                "{source}: unexpected status {}",
                reply.status.as_u16()
            )));
        }
        let index: RawArtifact = serde_json::from_slice(&reply.body)
            .map_err(|e| self.error_invalid(format!("{source} is not an index: {e}")))?;
        Ok(index
            .manifests
            .into_iter()
            .filter(|m| crate::reference::is_valid_digest(&m.digest))
            // What cosign and Sigstore clients attach; an SBOM or a scan report is not read.
            .filter(|m| m.artifact_type.as_deref().is_none_or(is_signature_artifact))
            .take(MAX_REFERRERS)
            .map(|m| m.digest)
            .collect())
    }

    /// The layers of type `what` of the artifact manifest at `reference` (a tag or digest).
    async fn artifact_layers(
        &self,
        repository: &str,
        reference: &str,
        what: Attached,
    ) -> Result<Vec<Layer>, RegistryError> {
        let url = self.v2(&format!("{repository}/manifests/{reference}"));
        let reply = self
            .get(
                RequestKind::ManifestGet,
                &url,
                repository,
                &[OCI_MANIFEST, manifest::DOCKER_MANIFEST],
            )
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !reply.status.is_success() {
            return Err(self.error_invalid(format!(
                "{repository}:{reference}: unexpected status {}",
                reply.status.as_u16()
            )));
        }
        if crate::reference::is_valid_digest(reference) {
            manifest::verify(&reply.body, reference)
                .map_err(|e| self.error_invalid(format!("{repository}@{reference}: {e}")))?;
        }
        let artifact: RawArtifact = serde_json::from_slice(&reply.body).map_err(|e| {
            self.error_invalid(format!("{repository}:{reference} is not a manifest: {e}"))
        })?;
        Ok(artifact
            .layers
            .into_iter()
            .filter(|l| l.media_type == what.layer_type() || is_bundle(&l.media_type))
            .filter(|l| crate::reference::is_valid_digest(&l.digest))
            .take(MAX_LAYERS)
            .map(|l| Layer {
                media_type: l.media_type,
                digest: l.digest,
                size: l.size,
                annotations: l.annotations,
            })
            .collect())
    }

    /// A payload blob, at most [`MAX_PAYLOAD`] bytes, checked against its digest.
    pub async fn payload(&self, repository: &str, layer: &Layer) -> Result<Vec<u8>, RegistryError> {
        if layer.size > MAX_PAYLOAD {
            return Err(self.error_invalid(format!(
                "signed payload {} of {repository} is {} bytes, over the {MAX_PAYLOAD} accepted",
                layer.digest, layer.size
            )));
        }
        let url = self.v2(&format!("{repository}/blobs/{}", layer.digest));
        let reply = self
            .get(RequestKind::BlobGet, &url, repository, &[])
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_invalid(format!(
                "signed payload {} of {repository}: unexpected status {}",
                layer.digest,
                reply.status.as_u16()
            )));
        }
        if u64::try_from(reply.body.len()).unwrap_or(u64::MAX) > MAX_PAYLOAD {
            return Err(self.error_invalid(format!(
                "signed payload {} of {repository} is over {MAX_PAYLOAD} bytes",
                layer.digest
            )));
        }
        manifest::verify(&reply.body, &layer.digest).map_err(|e| {
            self.error_invalid(format!(
                "signed payload {} of {repository}: {e}",
                layer.digest
            ))
        })?;
        Ok(reply.body)
    }
}

/// Whether a referrer of this artifact type may hold a signature or attestation: cosign's
/// referrer artifacts (`cosign sign --registry-referrers-mode=oci-1-1`), Sigstore bundles, and
/// the payload types themselves.
fn is_signature_artifact(artifact_type: &str) -> bool {
    is_bundle(artifact_type)
        || [
            "application/vnd.dev.cosign.artifact.sig.v1+json",
            "application/vnd.dev.cosign.artifact.att.v1+json",
            Attached::Signatures.layer_type(),
            Attached::Attestations.layer_type(),
        ]
        .contains(&artifact_type)
}

/// Whether `tag` is where cosign keeps an artifact of another image rather than an image to
/// deploy: `sha256-<hex>.sig`, `.att`, `.sbom`, and the bare `sha256-<hex>` of the referrers
/// tag schema. Such tags are never candidates: a strategy that ranks names (alphabetical) or
/// builds (newest-build) would otherwise pick a signature.
pub fn is_signature_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else {
        return false;
    };
    let hex = rest
        .strip_suffix(".sig")
        .or_else(|| rest.strip_suffix(".att"))
        .or_else(|| rest.strip_suffix(".sbom"))
        .unwrap_or(rest);
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::is_signature_tag;

    #[test]
    fn cosigns_artifact_tags_are_not_candidates() {
        let hex = "ab".repeat(32);
        for tag in [
            format!("sha256-{hex}.sig"),
            format!("sha256-{hex}.att"),
            format!("sha256-{hex}.sbom"),
            format!("sha256-{hex}"),
        ] {
            assert!(is_signature_tag(&tag), "{tag}");
        }
        for tag in [
            "v1.2.3".to_string(),
            format!("sha256-{}.sig", &hex[..62]),
            format!("sha256-{hex}.zip"),
            format!("sha512-{hex}.sig"),
            "sha256-latest".to_string(),
        ] {
            assert!(!is_signature_tag(&tag), "{tag}");
        }
    }
}
