//! A `Chart.yaml` dependency: the entry of `dependencies` whose `name` is the chart's and
//! whose `repository` is the chart's repository takes the `version`. A repository written as
//! an alias (`@bitnami`, `alias:bitnami`) does not say which repository it is, so it is
//! refused with what to write instead. `Chart.lock` is left for `helm dependency update`.

use super::{ChartKind, ChartVersion, at_line, set_in_entries};
use crate::writeback::yaml::{Patch, Yaml, YamlError};

pub(super) struct Dependency;

impl ChartKind for Dependency {
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &ChartVersion,
        patch: &mut Patch,
    ) -> Result<String, YamlError> {
        let entries = ("dependencies", "repository", "dependency");
        set_in_entries(yaml, source, desired, patch, entries, |item, repository| {
            if repository.starts_with('@') || repository.starts_with("alias:") {
                return Err(at_line(
                    source,
                    item.start(),
                    format!(
                        "dependency {} names the repository alias `{repository}`, which does not \
                         say which repository it is: nothing written. Write its url ({})",
                        desired.name, desired.repository
                    ),
                ));
            }
            Ok(())
        })
    }
}
