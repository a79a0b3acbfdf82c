//! OCI charts, read through the registry client like images, under the same budgets,
//! credentials, tokens and origin rules.
//!
//! Helm pushes a chart as an OCI artifact: its config is the chart's `Chart.yaml` as JSON
//! (`application/vnd.cncf.helm.config.v1+json`), and its manifest's annotations say when it
//! was packaged and its version. A tag cannot hold `+`, so Helm writes the version
//! `1.2.3+build.1` as the tag `1.2.3_build.1`; [`version_of_tag`] reads it back.

// Numbers here come from registries: no arithmetic that can overflow or panic.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::HashMap;

use serde::Deserialize;

use super::cache::Entry;
use super::client::{Client, RegistryError};
use super::manifest::{self, OCI_MANIFEST, checked_source};
use super::metrics::RequestKind;

/// The media type of a Helm chart's config.
pub const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
const CREATED: &str = "org.opencontainers.image.created";
const VERSION: &str = "org.opencontainers.image.version";

/// The chart version a tag names, when it names one (`1.2.3_build.1` is `1.2.3+build.1`).
pub fn version_of_tag(tag: &str) -> Option<String> {
    let version = tag.replace('_', "+");
    semver::Version::parse(&version).ok().map(|_| version)
}

/// The tag Helm pushes a chart version under.
pub fn tag_of_version(version: &str) -> String {
    version.replace('+', "_")
}

/// What a chart in an OCI repository is, by its manifest and config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartInfo {
    pub name: String,
    pub version: String,
    pub app_version: Option<String>,
    /// When it was packaged, from the manifest's annotation (Helm writes it on push).
    pub created: Option<jiff::Timestamp>,
    /// The repository its sources are in, from the annotation Helm takes from `Chart.yaml`.
    pub source: Option<String>,
}

#[derive(Deserialize)]
struct RawManifest {
    config: RawDescriptor,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawChart {
    name: String,
    version: String,
    #[serde(default)]
    app_version: Option<String>,
}

impl Client {
    /// When the chart at `repository@digest` was packaged, and the repository of its
    /// sources: what a poll needs, asked of the registry once per digest and then kept in
    /// the metadata cache (a digest names the same chart for ever).
    pub async fn chart_created(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<(Option<jiff::Timestamp>, Option<String>), RegistryError> {
        if let Some(Entry::Image {
            created,
            platform: None,
            source,
        }) = self.cache().get(digest)
        {
            return Ok((created, source.map(String::from)));
        }
        let chart = self.chart_info(repository, digest).await?;
        self.cache().insert(
            digest,
            Entry::Image {
                created: chart.created,
                platform: None,
                source: chart.source.clone().map(Into::into),
            },
        );
        Ok((chart.created, chart.source))
    }

    /// What the chart at `repository@digest` is. An artifact whose config is not a Helm
    /// chart's is refused, as is one whose manifest and config disagree on its version.
    pub async fn chart_info(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<ChartInfo, RegistryError> {
        let what = format!("{repository}@{digest}");
        let url = self.url(&format!("{repository}/manifests/{digest}"));
        let reply = self
            .get(RequestKind::ManifestGet, &url, repository, &[OCI_MANIFEST])
            .await?;
        self.expect_ok(&reply, what.clone())?;
        manifest::verify(&reply.body, digest)
            .map_err(|e| self.error_invalid(format!("manifest {what}: {e}")))?;
        let raw: RawManifest = serde_json::from_slice(&reply.body)
            .map_err(|e| self.error_invalid(format!("{what} is not an OCI manifest: {e}")))?;
        if raw.config.media_type != HELM_CONFIG {
            return Err(self.error_invalid(format!(
                "{what} is not a Helm chart: its config is `{}`",
                raw.config.media_type.escape_debug()
            )));
        }
        if !crate::reference::is_valid_digest(&raw.config.digest) {
            return Err(self.error_invalid(format!("{what} names a config that is not a digest")));
        }
        let url = self.url(&format!("{repository}/blobs/{}", raw.config.digest));
        let reply = self
            .get(RequestKind::BlobGet, &url, repository, &[])
            .await?;
        self.expect_ok(&reply, format!("config of {what}"))?;
        manifest::verify(&reply.body, &raw.config.digest)
            .map_err(|e| self.error_invalid(format!("config of {what}: {e}")))?;
        let chart: RawChart = serde_json::from_slice(&reply.body)
            .map_err(|e| self.error_invalid(format!("config of {what} is not a chart's: {e}")))?;
        if let Some(said) = raw.annotations.get(VERSION)
            && *said != chart.version
        {
            return Err(self.error_invalid(format!(
                "{what}: its manifest says version {said}, its chart {}",
                chart.version
            )));
        }
        Ok(ChartInfo {
            name: chart.name,
            version: chart.version,
            app_version: chart.app_version,
            created: raw.annotations.get(CREATED).and_then(|t| t.parse().ok()),
            source: checked_source(raw.annotations.get(manifest::SOURCE)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_versions_as_helm_writes_them() {
        assert_eq!(
            version_of_tag("1.2.3_build.1").as_deref(),
            Some("1.2.3+build.1")
        );
        assert_eq!(version_of_tag("6.9.0").as_deref(), Some("6.9.0"));
        assert_eq!(version_of_tag("latest"), None);
        assert_eq!(version_of_tag("sha256-abc.sig"), None);
        assert_eq!(tag_of_version("1.2.3+build.1"), "1.2.3_build.1");
    }
}
