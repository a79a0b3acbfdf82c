//! Chart repositories: Helm's `index.yaml` over HTTP(S), the other place charts are
//! published (OCI charts are read through the registry client, like images).
//!
//! - [`index`]: the index read as a stream, keeping only the charts asked for;
//! - [`repository`]: the index fetched conditionally (an unchanged index costs a 304),
//!   bounded in size and time, with credentials sent only to the repository's origin.

pub mod index;
pub mod repository;

pub use index::{ChartEntry, IndexError};
pub use repository::{ChartRepository, RepositoryError, Settings};
