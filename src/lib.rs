//! image-updater: watches container registries and commits new image tags into GitOps
//! manifests, one environment branch at a time.
//!
//! The library is organised by concern, each in its own folder:
//! - [`config`]: `updater.toml`, parsed and validated into a [`config::Config`] that cannot be wrong;
//! - [`reference`](mod@reference): image references (`ghcr.io/org/api:v1.2.3`) parsed and normalized;
//! - [`select`]: which tag to deploy, and why the others were not chosen;
//! - [`registry`]: reading tags, digests and creation times from registries, politely;
//! - [`writeback`]: byte-exact manifest edits, committed and pushed to git;
//! - [`forge`]: pull (merge) requests on GitHub, GitLab, Gitea and Forgejo;
//! - [`daemon`]: the service: scheduling, reload, state, metrics, safety rules, webhooks;
//! - [`private`]: the state dir's files, readable by the daemon's user only.
//!
//! The command-line interface lives in the binary (`src/cli/`) and only calls into these.

pub mod cluster;
pub mod config;
pub mod daemon;
pub mod forge;
pub mod hex;
pub mod private;
pub mod reference;
pub mod registry;
pub mod select;
pub mod verify;
pub mod writeback;
