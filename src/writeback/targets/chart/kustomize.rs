//! A kustomization's `helmCharts` entry (`kustomize build --enable-helm`): the entry whose
//! `name` is the chart's and whose `repo` is the chart's repository takes the `version`.

use super::{ChartKind, ChartVersion, set_in_entries};
use crate::writeback::yaml::{Patch, Yaml, YamlError};

pub(super) struct HelmCharts;

impl ChartKind for HelmCharts {
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &ChartVersion,
        patch: &mut Patch,
    ) -> Result<String, YamlError> {
        let entries = ("helmCharts", "repo", "helmCharts entry");
        set_in_entries(yaml, source, desired, patch, entries, |_, _| Ok(()))
    }
}
