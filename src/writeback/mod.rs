//! Writing chosen tags into manifests in git: byte-exact YAML edits, one commit per branch, and
//! pushes that never lose anyone's work.
//!
//! - [`yaml`]: the byte-exact editor and its check.
//! - [`targets`]: kustomization, Helm values and plain manifest targets.

pub mod targets;
pub mod yaml;

pub use targets::{Desired, FileEdit, edit};
pub use yaml::YamlError;
