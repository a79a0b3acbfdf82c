//! `updater.toml` exactly as written: the serde model of the file.
//!
//! Nothing here is trusted. Values that need checking keep their span (`Spanned`) so the
//! validator can point at them; unknown keys are not rejected by serde (that would stop at the
//! first one) but collected by the loader, so every problem is reported at once.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type Str = Spanned<String>;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub settings: Option<Spanned<RawSettings>>,
    #[serde(default)]
    pub registries: BTreeMap<String, Spanned<RawRegistry>>,
    #[serde(default)]
    pub repositories: BTreeMap<String, Spanned<RawRepository>>,
    #[serde(default)]
    pub environments: BTreeMap<String, Spanned<RawEnvironment>>,
    #[serde(default)]
    pub images: BTreeMap<String, Spanned<RawImage>>,
    #[serde(default)]
    pub webhooks: Option<Spanned<RawWebhooks>>,
    #[serde(default)]
    pub notifications: BTreeMap<String, Spanned<RawNotification>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawWebhooks {
    pub listen: Option<Str>,
    pub secret: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawNotification {
    pub url: Option<Str>,
    pub format: Option<Str>,
    pub credentials: Option<Str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSettings {
    pub state_dir: Option<Str>,
    pub interval: Option<Str>,
    pub log_level: Option<Str>,
    pub log_format: Option<Str>,
    pub listen: Option<Str>,
    /// How many of the longest interval may pass without a successful poll before the daemon
    /// reports itself unhealthy.
    pub unhealthy_after: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
pub struct RawRegistry {
    pub prefix: Option<Str>,
    pub api_url: Option<Str>,
    pub credentials: Option<Str>,
    #[serde(default)]
    pub default: Option<Spanned<bool>>,
    #[serde(default)]
    pub insecure: Option<Spanned<bool>>,
    pub ca_file: Option<Str>,
    pub rate_limit: Option<Spanned<f64>>,
    pub credentials_ttl: Option<Str>,
}

#[derive(Debug, Deserialize)]
pub struct RawRepository {
    pub url: Option<Str>,
    pub credentials: Option<Str>,
    pub author: Option<Str>,
    pub commit_message: Option<Str>,
    pub ssh_key: Option<Str>,
    pub known_hosts: Option<Str>,
    pub signing_key: Option<Str>,
}

#[derive(Debug, Deserialize)]
pub struct RawEnvironment {
    pub repository: Option<Str>,
    pub branch: Option<Str>,
    pub base_branch: Option<Str>,
}

/// The keys that decide which tag is chosen; an image sets defaults for them and each
/// environment may override any of them.
#[derive(Debug, Default, Deserialize)]
pub struct RawPolicy {
    pub strategy: Option<Str>,
    pub constraint: Option<Str>,
    pub include_prerelease: Option<Spanned<bool>>,
    pub tag: Option<Str>,
    pub allow_tags: Option<Spanned<Vec<Str>>>,
    pub ignore_tags: Option<Spanned<Vec<Str>>>,
    pub extract: Option<Str>,
    pub platforms: Option<Spanned<Vec<Str>>>,
    pub targets: Option<Spanned<Vec<Spanned<RawTarget>>>>,
    pub pin: Option<Str>,
    pub min_age: Option<Str>,
    pub age_from: Option<Str>,
    pub promote_from: Option<Str>,
    pub soak: Option<Str>,
    pub pin_digest: Option<Spanned<bool>>,
    pub allow_downgrade: Option<Spanned<bool>>,
}

/// An image. The policy keys are repeated here rather than flattened from [`RawPolicy`]:
/// serde's `flatten` buffers values and loses their spans.
#[derive(Debug, Deserialize)]
pub struct RawImage {
    pub image: Option<Str>,
    pub interval: Option<Str>,
    /// `immutable` (the default) or `mutable`: whether a tag, once seen, keeps its digest.
    pub tags: Option<Str>,
    pub environments: Option<Spanned<Vec<Str>>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<RawPolicy>>,
    /// Repositories this image took over (a registry migration).
    pub replaces: Option<Spanned<Vec<Str>>>,
    pub strategy: Option<Str>,
    pub constraint: Option<Str>,
    pub include_prerelease: Option<Spanned<bool>>,
    pub tag: Option<Str>,
    pub allow_tags: Option<Spanned<Vec<Str>>>,
    pub ignore_tags: Option<Spanned<Vec<Str>>>,
    pub extract: Option<Str>,
    pub platforms: Option<Spanned<Vec<Str>>>,
    pub targets: Option<Spanned<Vec<Spanned<RawTarget>>>>,
    pub pin: Option<Str>,
    pub min_age: Option<Str>,
    pub age_from: Option<Str>,
    pub promote_from: Option<Str>,
    pub soak: Option<Str>,
    pub pin_digest: Option<Spanned<bool>>,
    pub allow_downgrade: Option<Spanned<bool>>,
}

impl RawImage {
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
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RawTarget {
    pub kind: Option<Str>,
    pub file: Option<Str>,
    /// kustomization: the `images[].name` to match; helm: the older spelling of `image`.
    pub name: Option<Str>,
    /// helm, yaml: the path of a value holding `repo:tag`.
    pub image: Option<Str>,
    /// helm, yaml: the path of the tag.
    pub tag: Option<Str>,
    /// helm, yaml: the path of the repository.
    pub repository: Option<Str>,
    /// helm, yaml: the path of the registry host, for charts that keep it apart.
    pub registry: Option<Str>,
    /// helm, yaml: the path of the digest.
    pub digest: Option<Str>,
    /// yaml: which documents to edit, as `path = value` pairs.
    pub documents: Option<Spanned<BTreeMap<String, Str>>>,
    /// manifest: the container's name.
    pub container: Option<Str>,
    /// marker: a Flux image policy (`namespace:name`) whose `$imagepolicy` markers to follow.
    pub policy: Option<Str>,
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
        "webhooks",
        "notifications",
    ];
    pub const WEBHOOKS: &[&str] = &["listen", "secret"];
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
    ];
    pub const ENVIRONMENT: &[&str] = &["repository", "branch", "base_branch"];
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
    ];
    pub const IMAGE_ONLY: &[&str] = &[
        "image",
        "interval",
        "tags",
        "environments",
        "env",
        "replaces",
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
