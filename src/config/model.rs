//! The validated config: what the rest of the program runs on.
//!
//! Every value here has been checked, every cross-reference resolved (an environment's
//! repository exists, an image's registry is known), so code downstream never re-validates and
//! never meets a half-valid config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::reference::{Platform, Reference};
use crate::select::Policy;

pub use super::cluster::{Cluster, ClusterTls};
use super::credentials::CredentialRef;
pub use super::forge::{Forge, ForgeAuth, ForgeKind};
pub use super::targets::{ImagePaths, Marker, Segment, Target, ValuePath};
use super::template::Template;
pub use super::ui::Ui;
pub use super::verify::{AttestationRule, Keyless, Verification};
pub use super::webhooks::{WebhookTls, Webhooks};
pub use super::windows::Windows;

#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    /// By name.
    pub registries: BTreeMap<String, Registry>,
    /// By name.
    pub repositories: BTreeMap<String, Repository>,
    /// By name.
    pub environments: BTreeMap<String, Environment>,
    /// By alias.
    pub images: BTreeMap<String, Image>,
    /// The registry push-event endpoint, when enabled.
    pub webhooks: Option<Webhooks>,
    /// Where cycle summaries are sent, by name.
    pub notifications: BTreeMap<String, Notification>,
    /// Replicas sharing the work, when `[cluster]` is configured.
    pub cluster: Option<Cluster>,
    /// The status page, when `[ui]` enables it.
    pub ui: Option<Ui>,
}

/// `[notifications.NAME]`: one message per environment after each cycle that changed or
/// failed something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub name: String,
    /// The receiver's URL; a credential reference when the URL itself is the secret (Slack).
    pub url: NotificationUrl,
    pub format: NotificationFormat,
    /// Sent as `Authorization: Bearer`.
    pub credentials: Option<CredentialRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationUrl {
    Plain(String),
    Secret(CredentialRef),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationFormat {
    /// `{"environment": ..., "updates": [...], "failures": [...]}`.
    Json,
    /// `{"text": ...}`, which Slack, Mattermost and Rocket.Chat incoming webhooks accept.
    Slack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Mirrors, caches and the record of what was written.
    pub state_dir: PathBuf,
    /// How often an image is polled unless it sets its own interval.
    pub interval: Duration,
    /// A tracing filter directive such as `info` or `image_updater=debug`.
    pub log_level: String,
    pub log_format: LogFormat,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub listen: SocketAddr,
    /// `/healthz` and the watchdog report unhealthy when no image has been polled successfully
    /// for this many of the longest image interval.
    pub unhealthy_after: u32,
}

impl Settings {
    pub const DEFAULT_STATE_DIR: &'static str = "/var/lib/image-updater";
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8081";
    pub const DEFAULT_UNHEALTHY_AFTER: u32 = 3;
}

#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    pub name: String,
    /// The host images are matched by, Docker Hub's aliases folded into `docker.io`.
    pub prefix: String,
    /// Where requests go: `https://ghcr.io`, `http://127.0.0.1:5000` (plain http only when
    /// `insecure`).
    pub api_url: String,
    pub credentials: Option<CredentialRef>,
    /// The credentials were not written but implied by the host (a cloud's): when the
    /// cloud's chain finds nothing at all, the registry is read anonymously (its public
    /// repositories) rather than not at all.
    pub credentials_implied: bool,
    /// Used for images whose host matches no registry's prefix.
    pub default: bool,
    /// Skip TLS verification and allow plain http.
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    /// Requests per second: `rate_limit`, else what the registry publishes
    /// ([`crate::config::limits`]).
    pub rate_limit: f64,
    /// Whether the config set `rate_limit` (otherwise it is the registry's default).
    pub rate_limit_set: bool,
    /// How long a resolved credential is used before its source is read again (an `exec:`
    /// helper run again, a file re-read), so rotated secrets are picked up without a reload.
    pub credentials_ttl: Duration,
}

impl Registry {
    pub const DEFAULT_CREDENTIALS_TTL: Duration = Duration::from_secs(300);
}

#[derive(Debug, Clone)]
pub struct Repository {
    pub name: String,
    pub url: String,
    pub credentials: Option<CredentialRef>,
    pub author: Author,
    pub commit_message: Template,
    /// ssh urls: the private key, and the known_hosts file the server's key must be in.
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    /// An ssh private key that signs update commits, for branches that require signatures.
    pub signing_key: Option<PathBuf>,
    /// The forge hosting the repository, for pull requests: set in `[repositories.NAME.forge]`
    /// or known from the url (github.com, gitlab.com, codeberg.org).
    pub forge: Option<Forge>,
}

/// How an environment's updates reach its branch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Committed and pushed to the branch itself.
    #[default]
    Push,
    /// Committed to an update branch and proposed as a pull (merge) request.
    PullRequest,
}

/// `[environments.NAME.pull_request]`: the request an environment's updates are proposed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// The update branch, rendered from its template (`image-updater/{environment}`).
    pub branch: String,
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
    pub assignees: Vec<String>,
    pub draft: bool,
    /// Merge once the forge's rules allow it: the forge's own auto-merge where its API offers
    /// it, otherwise a merge of the exact head once the forge reports every check passed.
    pub auto_merge: bool,
    pub merge_method: MergeMethod,
}

impl PullRequest {
    pub const DEFAULT_BRANCH: &'static str = "image-updater/{environment}";

    /// The default settings, with `branch` as the update branch.
    pub fn on(branch: impl Into<String>) -> PullRequest {
        PullRequest {
            branch: branch.into(),
            labels: Vec::new(),
            reviewers: Vec::new(),
            assignees: Vec::new(),
            draft: false,
            auto_merge: false,
            merge_method: MergeMethod::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MergeMethod {
    #[default]
    Merge,
    Squash,
    Rebase,
}

impl MergeMethod {
    /// As the config and the forges' APIs spell it.
    pub fn name(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub name: String,
    /// The repository's name in [`Config::repositories`].
    pub repository: String,
    pub branch: String,
    /// Where `branch` is created from when it does not exist yet.
    pub base_branch: Option<String>,
    /// Higher is polled first when a registry's budget cannot poll every image at its
    /// interval; 0 by default.
    pub priority: u32,
    /// Push to `branch`, or propose through a pull request; an image may say otherwise.
    pub write: WriteMode,
    /// The request's settings; defaults unless `[environments.NAME.pull_request]` is set.
    pub pull_request: PullRequest,
    /// When writes may happen (deploy windows, freezes); always, by default.
    pub windows: Windows,
}

#[derive(Debug, Clone)]
pub struct Image {
    pub alias: String,
    /// Without tag, except that the digest strategy may carry the tag it follows.
    pub reference: Reference,
    /// The registry's name in [`Config::registries`]; `None` means anonymous access to the
    /// reference's own host over https.
    pub registry: Option<String>,
    pub interval: Duration,
    /// Whether the registry's tags of this image keep their digest once pushed.
    pub tags: Tags,
    /// Repositories this image took over (a registry migration): values naming them are the
    /// image's to rewrite. Normalized (`docker.io/library/nginx`).
    pub replaces: Vec<String>,
    /// One per environment the image is deployed to, in environment-name order.
    pub deployments: Vec<Deployment>,
    /// Where its versions come from: an image's tags, or a Helm chart's versions.
    pub source: Source,
}

/// What a configured source is, and where its versions are listed. An image and an OCI chart
/// are both read through the registry client (`reference` is their repository); a chart in a
/// chart repository is read from the repository's `index.yaml`, and `reference` is only the
/// name it is known by (`kubernetes.github.io/ingress-nginx/ingress-nginx`): in `status`,
/// holds, the cluster's division of the work and the first sightings of its versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Source {
    /// `[images.ALIAS]`: a container image's tags.
    #[default]
    Image,
    /// `[charts.ALIAS] chart = "oci://…"`: a Helm chart pushed to an OCI registry, whose tags
    /// are its versions.
    OciChart,
    /// `[charts.ALIAS] repository = "https://…"`: a Helm chart in a chart repository.
    ChartIndex(ChartIndex),
}

/// A chart repository and the chart read from its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartIndex {
    /// The repository's url, without a trailing `/` (`https://charts.example.com/stable`).
    pub url: String,
    /// The chart's name in the index (`ingress-nginx`).
    pub name: String,
    /// Sent as basic auth, to the repository's origin only.
    pub credentials: Option<CredentialRef>,
    pub ca_file: Option<PathBuf>,
    /// The largest `index.yaml` read, in bytes.
    pub max_index_size: u64,
    /// Versions the chart's maintainers deprecated may be chosen.
    pub allow_deprecated: bool,
}

impl Source {
    /// For a chart: the repository it is named by in the files that pin it (a chart
    /// repository's url, or `oci://host/path` without the chart's name) and its name.
    pub fn chart(&self, reference: &Reference) -> Option<(String, String)> {
        match self {
            Source::Image => None,
            Source::OciChart => {
                let (path, name) = reference
                    .path
                    .rsplit_once('/')
                    .unwrap_or(("", reference.path.as_str()));
                let repository = if path.is_empty() {
                    format!("oci://{}", reference.domain)
                } else {
                    format!("oci://{}/{path}", reference.domain)
                };
                Some((repository, name.to_string()))
            }
            Source::ChartIndex(index) => Some((index.url.clone(), index.name.clone())),
        }
    }

    pub fn is_chart(&self) -> bool {
        !matches!(self, Source::Image)
    }
}

impl Image {
    /// The name of the registry client the image is read through: its configured registry,
    /// else its reference's host. Its requests share that registry's budget, and what its
    /// tags resolve to is cached under it.
    ///
    /// A chart repository is its own lane, named by its url.
    pub fn registry_key(&self) -> String {
        if let Source::ChartIndex(index) = &self.source {
            return index.url.clone();
        }
        self.registry
            .clone()
            .unwrap_or_else(|| self.reference.registry().to_string())
    }

    /// What people call it in messages: `image` or `chart`.
    pub fn noun(&self) -> &'static str {
        if self.source.is_chart() {
            "chart"
        } else {
            "image"
        }
    }
}

/// Whether a tag, once seen, keeps pointing to the same digest. Release tags (`v1.5.0`) and
/// build tags (`main-8b7e6d4`) are written once by most pipelines, so by default a digest
/// learned for a tag is reused rather than asked for again every poll; `mutable` asks every
/// time. A tag the digest strategy follows, and a winner whose digest is written
/// (`pin_digest`), are asked for every poll whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tags {
    #[default]
    Immutable,
    Mutable,
}

/// An image in one environment: how its tag is chosen there and where it is written.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub environment: String,
    pub policy: Policy,
    pub platforms: Vec<Platform>,
    pub targets: Vec<Target>,
    pub safety: Safety,
    /// The image's own `write`, over the environment's.
    pub write: Option<WriteMode>,
    /// The signatures (and attestation) a digest must carry to be written here.
    pub verify: Option<std::sync::Arc<Verification>>,
}

/// The rules that keep a tag the policy chose from being deployed too early or twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Safety {
    /// Deploy exactly this tag, whatever else the registry has.
    pub pin: Option<String>,
    /// A tag is eligible only once it is this old.
    pub min_age: Option<Duration>,
    pub age_from: AgeFrom,
    /// Take only what has been deployed to this environment (by image-updater) for `soak`.
    pub promote_from: Option<String>,
    pub soak: Duration,
    /// Write `tag@digest`, so the exact image chosen is the image deployed.
    pub pin_digest: bool,
    /// Write a tag that ranks below the one in the file; off by default.
    pub allow_downgrade: bool,
}

/// Where a tag's age is counted from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AgeFrom {
    /// The first time image-updater saw the tag in the registry (works on every registry).
    #[default]
    FirstSeen,
    /// The image config's `created` time (as the image's builder wrote it).
    Created,
}
