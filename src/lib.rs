//! image-updater: watches container registries and commits new image tags into GitOps
//! manifests, one environment branch at a time.
//!
//! The library is organised by concern, each in its own folder, on floors: a module uses only
//! those below it (docs/architecture.md has the picture; `tests/layers.rs` enforces it):
//! - [`reference`](mod@reference), [`hex`], [`private`], [`suggest`], [`bounded`]: image
//!   references, hex, files only the daemon's user reads, "did you mean", bodies read up to a
//!   limit;
//! - [`select`]: which tag to deploy, and why the others were not chosen; [`state`]: what the
//!   state dir remembers; [`trust`]: cosign keys and Sigstore trusted roots, parsed;
//! - [`config`]: `updater.toml`, parsed and validated into a [`config::Config`] that cannot be wrong;
//! - [`secrets`]: credential references turned into secrets when needed;
//! - [`registry`]: reading tags, digests and creation times from registries, politely;
//!   [`charts`]: chart repositories' indexes, read conditionally and bounded;
//!   [`writeback`]: byte-exact manifest edits, committed and pushed to git;
//! - [`verify`]: signatures and attestations; [`forge`]: pull (merge) requests on GitHub,
//!   GitLab, Gitea and Forgejo; [`import`]: other tools' image automation as a config;
//! - [`poll`]: one image's poll: list, filter, rank, resolve, verify;
//! - [`cluster`]: replicas sharing the work through etcd;
//! - [`daemon`]: the service: scheduling, reload, metrics, safety rules, webhooks.
//!
//! The command-line interface lives in the binary (`src/cli/`) and only calls into these.

pub mod bounded;
pub mod charts;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod forge;
pub mod hex;
pub mod import;
pub mod poll;
pub mod private;
pub mod reference;
pub mod registry;
pub mod secrets;
pub mod select;
pub mod state;
pub mod suggest;
pub mod trust;
pub mod verify;
pub mod writeback;
