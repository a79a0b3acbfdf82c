//! A kustomization's `helmCharts` entry (`kustomize build --enable-helm`): the entry whose
//! `name` is the chart's and whose `repo` is the chart's repository takes the `version`.

use super::{ChartKind, ChartVersion, items, node_path, not_found, scalar, set_version};
use crate::writeback::yaml::{Patch, Yaml, YamlError, error};

pub(super) struct HelmCharts;

impl ChartKind for HelmCharts {
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &ChartVersion,
        patch: &mut Patch,
    ) -> Result<String, YamlError> {
        let [root] = yaml.documents.as_slice() else {
            return Err(error("the kustomization is one YAML document"));
        };
        let mut old = None;
        for (item, steps) in items(source, root, &[], "helmCharts")? {
            let repo = scalar(source, item, "repo")?.unwrap_or_default();
            if scalar(source, item, "name")? != Some(desired.name.as_str())
                || !desired.same_repository(repo)
            {
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
        old.ok_or_else(|| not_found(desired, "helmCharts entry"))
    }
}
