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

use crate::select::{Barred, Candidate, Unavailable};

/// A chart's versions as candidates for a policy, as tags are for an image: the version, when
/// it was packaged, the package's digest. A version its maintainers deprecated is kept out,
/// saying so, unless `allow_deprecated`.
pub fn candidates(entries: &[ChartEntry], allow_deprecated: bool) -> Vec<Candidate> {
    entries
        .iter()
        .map(|entry| Candidate {
            tag: entry.version.clone(),
            created: entry.created,
            digest: entry.digest.as_ref().map(|d| format!("sha256:{d}")),
            unavailable: (entry.deprecated && !allow_deprecated).then(|| {
                Unavailable::new(
                    Barred::Deprecated,
                    "deprecated by its maintainers (allow_deprecated = true takes it)",
                )
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::{Names, Policy, Strategy, select};

    fn entry(version: &str, deprecated: bool) -> ChartEntry {
        ChartEntry {
            version: version.into(),
            deprecated,
            ..ChartEntry::default()
        }
    }

    #[test]
    fn chart_versions_are_chosen_by_the_images_policies() {
        let entries = [
            entry("6.9.0", false),
            entry("6.10.0+build.1", false),
            entry("7.0.0", true),
        ];
        let mut policy = Policy::new(Strategy::Semver {
            constraint: crate::select::semver::Constraint::parse("").unwrap(),
            include_prerelease: false,
        });
        // As tags, `+` is refused; as chart versions, it is build metadata.
        let chosen_as = |names, allow| {
            let mut policy = policy.clone();
            policy.names = names;
            let candidates = candidates(&entries, allow);
            select(&policy, &candidates)
                .selected
                .map(|i| candidates[i].tag.clone())
        };
        assert_eq!(chosen_as(Names::ImageTags, false).as_deref(), Some("6.9.0"));
        policy.names = Names::ChartVersions;
        let chosen = |allow| {
            let candidates = candidates(&entries, allow);
            select(&policy, &candidates)
                .selected
                .map(|i| candidates[i].tag.clone())
        };
        assert_eq!(chosen(false).as_deref(), Some("6.10.0+build.1"));
        assert_eq!(chosen(true).as_deref(), Some("7.0.0"));
    }
}
