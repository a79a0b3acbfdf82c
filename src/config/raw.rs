//! `updater.toml` exactly as written: the serde model of the file.
//!
//! Nothing here is trusted. Values that need checking keep their span (`Spanned`) so the
//! validator can point at them; unknown keys are not rejected by serde (that would stop at the
//! first one) but collected by the loader, so every problem is reported at once.

use std::collections::BTreeMap;

pub use super::cluster::RawCluster;
pub use super::forge::RawForge;
pub use super::targets::RawTarget;
pub use super::ui::RawUi;
pub use super::verify::RawVerify;
pub use super::webhooks::RawWebhooks;
pub use super::windows::RawFreeze;
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

pub use super::validator::Str;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    #[schemars(with = "Option<RawSettings>")]
    pub settings: Option<Spanned<RawSettings>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawRegistry>")]
    pub registries: BTreeMap<String, Spanned<RawRegistry>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawRepository>")]
    pub repositories: BTreeMap<String, Spanned<RawRepository>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawEnvironment>")]
    pub environments: BTreeMap<String, Spanned<RawEnvironment>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawImage>")]
    pub images: BTreeMap<String, Spanned<RawImage>>,
    /// Helm charts, whose versions are chosen and written as images' tags are. The same
    /// type as an image: the policy keys are shared, and which keys each section takes is
    /// checked by the loader's key lists ([`keys::CHART_ONLY`], [`keys::IMAGE_ONLY`]).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawImage>")]
    pub charts: BTreeMap<String, Spanned<RawImage>>,
    #[serde(default)]
    #[schemars(with = "Option<RawWebhooks>")]
    pub webhooks: Option<Spanned<RawWebhooks>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawNotification>")]
    pub notifications: BTreeMap<String, Spanned<RawNotification>>,
    #[serde(default)]
    #[schemars(with = "Option<RawCluster>")]
    pub cluster: Option<Spanned<RawCluster>>,
    #[serde(default)]
    #[schemars(with = "Option<RawUi>")]
    pub ui: Option<Spanned<RawUi>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawNotification {
    #[schemars(with = "Option<String>")]
    pub url: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub format: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub credentials: Option<Str>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawSettings {
    #[schemars(with = "Option<String>")]
    pub state_dir: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub interval: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub log_level: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub log_format: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub listen: Option<Str>,
    /// How many of the longest interval may pass without a successful poll before the daemon
    /// reports itself unhealthy.
    #[schemars(with = "Option<u32>")]
    pub unhealthy_after: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawRegistry {
    #[schemars(with = "Option<String>")]
    pub prefix: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub api_url: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub credentials: Option<Str>,
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub default: Option<Spanned<bool>>,
    #[serde(default)]
    #[schemars(with = "Option<bool>")]
    pub insecure: Option<Spanned<bool>>,
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Str>,
    #[schemars(with = "Option<f64>")]
    pub rate_limit: Option<Spanned<f64>>,
    #[schemars(with = "Option<String>")]
    pub credentials_ttl: Option<Str>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawRepository {
    #[schemars(with = "Option<String>")]
    pub url: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub credentials: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub author: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub commit_message: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub ssh_key: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub known_hosts: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub signing_key: Option<Str>,
    #[schemars(with = "Option<RawForge>")]
    pub forge: Option<Spanned<RawForge>>,
}

/// `[environments.NAME.pull_request]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawPullRequest {
    #[schemars(with = "Option<String>")]
    pub branch: Option<Str>,
    #[schemars(with = "Option<Vec<String>>")]
    pub labels: Option<Spanned<Vec<Str>>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub reviewers: Option<Spanned<Vec<Str>>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub assignees: Option<Spanned<Vec<Str>>>,
    #[schemars(with = "Option<bool>")]
    pub draft: Option<Spanned<bool>>,
    #[schemars(with = "Option<bool>")]
    pub auto_merge: Option<Spanned<bool>>,
    #[schemars(with = "Option<String>")]
    pub merge_method: Option<Str>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawEnvironment {
    #[schemars(with = "Option<String>")]
    pub repository: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub branch: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub base_branch: Option<Str>,
    #[schemars(with = "Option<u32>")]
    pub priority: Option<Spanned<i64>>,
    /// `push` (the default) or `pull-request`.
    #[schemars(with = "Option<String>")]
    pub write: Option<Str>,
    #[schemars(with = "Option<RawPullRequest>")]
    pub pull_request: Option<Spanned<RawPullRequest>>,
    /// When writes happen: `["Mon-Thu 09:00-16:00 Europe/Berlin"]`.
    #[schemars(with = "Option<Vec<String>>")]
    pub windows: Option<Spanned<Vec<Str>>>,
    /// Periods in which nothing is written.
    #[schemars(with = "Option<Vec<RawFreeze>>")]
    pub freeze: Option<Spanned<Vec<Spanned<RawFreeze>>>>,
    /// A file whose presence on the branch stops writes.
    #[schemars(with = "Option<String>")]
    pub freeze_file: Option<Str>,
}

/// The keys that decide which tag is chosen; an image sets defaults for them and each
/// environment may override any of them.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawPolicy {
    #[schemars(with = "Option<String>")]
    pub strategy: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub constraint: Option<Str>,
    #[schemars(with = "Option<bool>")]
    pub include_prerelease: Option<Spanned<bool>>,
    #[schemars(with = "Option<String>")]
    pub tag: Option<Str>,
    #[schemars(with = "Option<Vec<String>>")]
    pub allow_tags: Option<Spanned<Vec<Str>>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub ignore_tags: Option<Spanned<Vec<Str>>>,
    #[schemars(with = "Option<String>")]
    pub extract: Option<Str>,
    #[schemars(with = "Option<Vec<String>>")]
    pub platforms: Option<Spanned<Vec<Str>>>,
    #[schemars(with = "Option<Vec<RawTarget>>")]
    pub targets: Option<Spanned<Vec<Spanned<RawTarget>>>>,
    #[schemars(with = "Option<String>")]
    pub pin: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub min_age: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub age_from: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub promote_from: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub soak: Option<Str>,
    #[schemars(with = "Option<bool>")]
    pub pin_digest: Option<Spanned<bool>>,
    #[schemars(with = "Option<bool>")]
    pub allow_downgrade: Option<Spanned<bool>>,
    /// `push` or `pull-request`, over the environment's `write`.
    #[schemars(with = "Option<String>")]
    pub write: Option<Str>,
    #[schemars(with = "Option<RawVerify>")]
    pub verify: Option<Spanned<RawVerify>>,
}

/// An image. The policy keys are repeated here rather than flattened from [`RawPolicy`]:
/// serde's `flatten` buffers values and loses their spans.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawImage {
    #[schemars(with = "Option<String>")]
    pub image: Option<Str>,
    /// charts: `oci://host/path/name`, a chart in an OCI registry.
    #[schemars(with = "Option<String>")]
    pub chart: Option<Str>,
    /// charts: a chart repository's url, with `name`.
    #[schemars(with = "Option<String>")]
    pub repository: Option<Str>,
    /// charts: the chart's name in `repository`'s index.
    #[schemars(with = "Option<String>")]
    pub name: Option<Str>,
    /// charts: basic auth for `repository`.
    #[schemars(with = "Option<String>")]
    pub credentials: Option<Str>,
    /// charts: a CA bundle for `repository`.
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Str>,
    /// charts: the largest `index.yaml` read (`32MiB`).
    #[schemars(with = "Option<String>")]
    pub max_index_size: Option<Str>,
    /// charts: deprecated versions may be chosen.
    #[schemars(with = "Option<bool>")]
    pub allow_deprecated: Option<Spanned<bool>>,
    #[schemars(with = "Option<String>")]
    pub interval: Option<Str>,
    /// `immutable` (the default) or `mutable`: whether a tag, once seen, keeps its digest.
    #[schemars(with = "Option<String>")]
    pub tags: Option<Str>,
    #[schemars(with = "Option<Vec<String>>")]
    pub environments: Option<Spanned<Vec<Str>>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawPolicy>")]
    pub env: BTreeMap<String, Spanned<RawPolicy>>,
    /// Repositories this image took over (a registry migration).
    #[schemars(with = "Option<Vec<String>>")]
    pub replaces: Option<Spanned<Vec<Str>>>,
    #[schemars(with = "Option<String>")]
    pub strategy: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub constraint: Option<Str>,
    #[schemars(with = "Option<bool>")]
    pub include_prerelease: Option<Spanned<bool>>,
    #[schemars(with = "Option<String>")]
    pub tag: Option<Str>,
    #[schemars(with = "Option<Vec<String>>")]
    pub allow_tags: Option<Spanned<Vec<Str>>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub ignore_tags: Option<Spanned<Vec<Str>>>,
    #[schemars(with = "Option<String>")]
    pub extract: Option<Str>,
    #[schemars(with = "Option<Vec<String>>")]
    pub platforms: Option<Spanned<Vec<Str>>>,
    #[schemars(with = "Option<Vec<RawTarget>>")]
    pub targets: Option<Spanned<Vec<Spanned<RawTarget>>>>,
    #[schemars(with = "Option<String>")]
    pub pin: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub min_age: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub age_from: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub promote_from: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub soak: Option<Str>,
    #[schemars(with = "Option<bool>")]
    pub pin_digest: Option<Spanned<bool>>,
    #[schemars(with = "Option<bool>")]
    pub allow_downgrade: Option<Spanned<bool>>,
    /// `push` or `pull-request`, over the environment's `write`.
    #[schemars(with = "Option<String>")]
    pub write: Option<Str>,
    #[schemars(with = "Option<RawVerify>")]
    pub verify: Option<Spanned<RawVerify>>,
}

impl RawImage {
    /// The keys only a chart has, where they are written: `chart` and `repository`, then
    /// the chart repository's own.
    pub fn chart_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        [
            ("chart", self.chart.as_ref().map(Spanned::span)),
            ("repository", self.repository.as_ref().map(Spanned::span)),
            ("name", self.name.as_ref().map(Spanned::span)),
            ("credentials", self.credentials.as_ref().map(Spanned::span)),
            ("ca_file", self.ca_file.as_ref().map(Spanned::span)),
            (
                "max_index_size",
                self.max_index_size.as_ref().map(Spanned::span),
            ),
            (
                "allow_deprecated",
                self.allow_deprecated.as_ref().map(Spanned::span),
            ),
        ]
        .into_iter()
        .filter_map(|(key, span)| Some((key, span?)))
        .collect()
    }

    /// The image-level defaults of the policy keys.
    pub fn take_policy(&mut self) -> RawPolicy {
        RawPolicy {
            strategy: self.strategy.take(),
            constraint: self.constraint.take(),
            include_prerelease: self.include_prerelease.take(),
            tag: self.tag.take(),
            allow_tags: self.allow_tags.take(),
            ignore_tags: self.ignore_tags.take(),
            extract: self.extract.take(),
            platforms: self.platforms.take(),
            targets: self.targets.take(),
            pin: self.pin.take(),
            min_age: self.min_age.take(),
            age_from: self.age_from.take(),
            promote_from: self.promote_from.take(),
            soak: self.soak.take(),
            pin_digest: self.pin_digest.take(),
            allow_downgrade: self.allow_downgrade.take(),
            write: self.write.take(),
            verify: self.verify.take(),
        }
    }
}

/// The keys each table accepts, for "unknown key" hints. Kept beside the structs they describe;
/// a test checks they agree.
pub mod keys {
    pub const TOP: &[&str] = &[
        "settings",
        "registries",
        "repositories",
        "environments",
        "images",
        "charts",
        "webhooks",
        "notifications",
        "cluster",
        "ui",
    ];
    pub const CLUSTER: &[&str] = &["backend", "endpoints", "name", "lease", "credentials"];
    pub const WEBHOOKS: &[&str] = &["listen", "secret"];
    pub const UI: &[&str] = &["enabled", "read_token", "page_size"];
    pub const NOTIFICATION: &[&str] = &["url", "format", "credentials"];
    pub const SETTINGS: &[&str] = &[
        "state_dir",
        "interval",
        "log_level",
        "log_format",
        "listen",
        "unhealthy_after",
    ];
    pub const REGISTRY: &[&str] = &[
        "prefix",
        "api_url",
        "credentials",
        "default",
        "insecure",
        "ca_file",
        "rate_limit",
        "credentials_ttl",
    ];
    pub const REPOSITORY: &[&str] = &[
        "url",
        "credentials",
        "author",
        "commit_message",
        "ssh_key",
        "known_hosts",
        "signing_key",
        "forge",
    ];
    pub const FORGE: &[&str] = &[
        "type",
        "api_url",
        "project",
        "token",
        "app_id",
        "app_key",
        "installation_id",
        "insecure",
    ];
    pub const ENVIRONMENT: &[&str] = &[
        "repository",
        "branch",
        "base_branch",
        "priority",
        "write",
        "pull_request",
        "windows",
        "freeze",
        "freeze_file",
    ];
    pub const FREEZE: &[&str] = &["from", "to", "reason", "tz"];
    pub const PULL_REQUEST: &[&str] = &[
        "branch",
        "labels",
        "reviewers",
        "assignees",
        "draft",
        "auto_merge",
        "merge_method",
    ];
    pub const POLICY: &[&str] = &[
        "strategy",
        "constraint",
        "include_prerelease",
        "tag",
        "allow_tags",
        "ignore_tags",
        "extract",
        "platforms",
        "targets",
        "pin",
        "min_age",
        "age_from",
        "promote_from",
        "soak",
        "pin_digest",
        "allow_downgrade",
        "write",
        "verify",
    ];
    pub const VERIFY: &[&str] = &[
        "cosign_key",
        "cosign_keys",
        "certificate_identity",
        "certificate_oidc_issuer",
        "trusted_root",
        "attestation",
    ];
    pub const ATTESTATION: &[&str] = &["predicate_type", "field", "equals"];
    pub const IMAGE_ONLY: &[&str] = &[
        "image",
        "interval",
        "tags",
        "environments",
        "env",
        "replaces",
    ];
    /// `[charts.NAME]`'s own keys, beside the policy's.
    pub const CHART_ONLY: &[&str] = &[
        "chart",
        "repository",
        "name",
        "credentials",
        "ca_file",
        "max_index_size",
        "allow_deprecated",
        "interval",
        "environments",
        "env",
    ];
    pub const TARGET: &[&str] = &[
        "kind",
        "file",
        "name",
        "image",
        "tag",
        "repository",
        "registry",
        "digest",
        "documents",
        "container",
        "policy",
    ];
}
