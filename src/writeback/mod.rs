//! Writing chosen tags into manifests in git: byte-exact YAML edits, one commit per branch, and
//! pushes that never lose anyone's work.
//!
//! - [`yaml`]: the byte-exact editor and its check.
//! - [`targets`]: kustomization, Helm values and plain manifest targets.
//! - [`git`]: the bare mirror: fetch and push with the git CLI, commits with gix.
//! - [`branch`]: one branch's update: edit, commit, push with a lease, retry on a race.
//! - [`request`]: a pull request's update branch, rebuilt from the environment's branch.
//! - [`sign`]: ssh signatures for update commits.

pub mod branch;
pub mod error;
pub mod git;
pub mod request;
pub mod sign;
pub mod targets;
pub mod yaml;

pub use branch::{
    Applied, Decision, Failed, FileChange, Guard, ImageChange, Outcome, Skipped, Superseded,
    WriteError, write_branch,
};
pub use error::GitError;
pub use git::{Mirror, Push};
pub use targets::{Desired, FileEdit, edit, split_image};
pub use yaml::YamlError;
