//! A `Chart.yaml` dependency: the entry of `dependencies` whose `name` is the chart's and
//! whose `repository` is the chart's repository takes the `version`. A repository written as
//! an alias (`@bitnami`, `alias:bitnami`) does not say which repository it is, so it is
//! refused with what to write instead. `Chart.lock` is left for `helm dependency update`.

use super::{ChartKind, ChartVersion, at_line, items, node_path, not_found, scalar, set_version};
use crate::writeback::yaml::{Patch, Yaml, YamlError, error};

pub(super) struct Dependency;

impl ChartKind for Dependency {
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &ChartVersion,
        patch: &mut Patch,
    ) -> Result<String, YamlError> {
        let [root] = yaml.documents.as_slice() else {
            return Err(error("Chart.yaml is one YAML document"));
        };
        let mut old = None;
        for (item, steps) in items(source, root, &[], "dependencies")? {
            if scalar(source, item, "name")? != Some(desired.name.as_str()) {
                continue;
            }
            let repository = scalar(source, item, "repository")?.unwrap_or_default();
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
            if !desired.same_repository(repository) {
                continue;
            }
            let path = node_path(0, &steps);
            old = Some(set_version(
                source,
                item,
                &path,
                "version",
                &desired.version,
                patch,
            )?);
        }
        old.ok_or_else(|| not_found(desired, "dependency"))
    }
}
