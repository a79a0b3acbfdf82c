//! Flux: a `HelmRelease`'s chart, and an `OCIRepository` holding a chart.
//!
//! A `HelmRelease` names its chart in one of two ways. A `HelmChart` template
//! (`spec.chart.spec.chart` from `spec.chart.spec.sourceRef`, a `HelmRepository`) takes
//! `spec.chart.spec.version`; when the `HelmRepository` it names is in the same file, its
//! `spec.url` must be the chart's repository. An `OCIRepository` template
//! (`spec.chart.kind: OCIRepository`, `spec.chart.spec.url`) takes `spec.chart.spec.ref.tag`.
//! A release whose `spec.chartRef` points at an `OCIRepository` object is moved by editing
//! that object (`kind = "ocirepository"`).

use super::{
    ChartKind, ChartVersion, at_line, documents_of, node_path, not_found, scalar, set_version, walk,
};
use crate::writeback::yaml::{Node, NodePath, Patch, Yaml, YamlError, error};

pub(super) struct HelmRelease;

impl ChartKind for HelmRelease {
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &ChartVersion,
        patch: &mut Patch,
    ) -> Result<String, YamlError> {
        let mut old = None;
        for (d, doc) in documents_of(yaml, source, &["HelmRelease"])? {
            let Some((chart, steps)) = walk(source, doc, &["spec", "chart"])? else {
                continue;
            };
            let Some((spec, spec_steps)) = walk(source, chart, &["spec"])? else {
                continue;
            };
            let mut path = steps.clone();
            path.extend(spec_steps);
            let path = node_path(d, &path);
            if scalar(source, chart, "kind")? == Some("OCIRepository") {
                let url = scalar(source, spec, "url")?.unwrap_or_default();
                if desired.is_chart_url(url) {
                    old = Some(set_oci_tag(source, spec, &path, desired, patch)?);
                }
                continue;
            }
            if scalar(source, spec, "chart")? != Some(desired.name.as_str()) {
                continue;
            }
            check_repository(yaml, source, spec, desired)?;
            old = Some(set_version(
                source,
                spec,
                &path,
                "version",
                &desired.version,
                patch,
            )?);
        }
        old.ok_or_else(|| not_found(desired, "HelmRelease"))
    }
}

/// When the `HelmRepository` the release's chart comes from is in the same file, it must be
/// the chart's repository: a chart of the same name elsewhere is not ours.
fn check_repository(
    yaml: &Yaml,
    source: &str,
    spec: &Node,
    desired: &ChartVersion,
) -> Result<(), YamlError> {
    let Some((reference, _)) = walk(source, spec, &["sourceRef"])? else {
        return Ok(());
    };
    let name = scalar(source, reference, "name")?;
    for (_, doc) in documents_of(yaml, source, &["HelmRepository"])? {
        let Some((metadata, _)) = walk(source, doc, &["metadata"])? else {
            continue;
        };
        if scalar(source, metadata, "name")? != name {
            continue;
        }
        let url = walk(source, doc, &["spec"])?
            .map(|(spec, _)| scalar(source, spec, "url"))
            .transpose()?
            .flatten()
            .unwrap_or_default();
        if !desired.same_repository(url) {
            return Err(at_line(
                source,
                spec.start(),
                format!(
                    "this release's chart {} comes from HelmRepository {} at {url}, not {}: \
                     nothing written",
                    desired.name,
                    name.unwrap_or_default(),
                    desired.repository
                ),
            ));
        }
    }
    Ok(())
}

/// `ref.tag` of an OCI source's `spec`; a `semver` or `digest` ref is refused, since it is
/// not a version image-updater may move.
fn set_oci_tag(
    source: &str,
    spec: &Node,
    path: &NodePath,
    desired: &ChartVersion,
    patch: &mut Patch,
) -> Result<String, YamlError> {
    let Some((reference, steps)) = walk(source, spec, &["ref"])? else {
        return Err(at_line(
            source,
            spec.start(),
            format!(
                "the OCI source of {} has no `ref`: add `ref: {{tag: {}}}` for image-updater to move it",
                desired.name,
                desired.tag()
            ),
        ));
    };
    for pinned in ["semver", "digest"] {
        if let Some(value) = scalar(source, reference, pinned)? {
            return Err(at_line(
                source,
                reference.start(),
                format!(
                    "`ref.{pinned}: {value}` chooses the chart by itself: nothing written. \
                     Write `ref.tag` instead for image-updater to move it"
                ),
            ));
        }
    }
    let mut at = path.clone();
    at.steps.extend(steps);
    set_version(source, reference, &at, "tag", &desired.tag(), patch)
}

pub(super) struct OciRepository;

impl ChartKind for OciRepository {
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &ChartVersion,
        patch: &mut Patch,
    ) -> Result<String, YamlError> {
        if !desired.is_oci() {
            return Err(error(format!(
                "{} is not in an OCI repository: an OCIRepository cannot hold it",
                desired.describe()
            )));
        }
        let mut old = None;
        for (d, doc) in documents_of(yaml, source, &["OCIRepository"])? {
            let Some((spec, steps)) = walk(source, doc, &["spec"])? else {
                continue;
            };
            let url = scalar(source, spec, "url")?.unwrap_or_default();
            if !desired.is_chart_url(url) {
                continue;
            }
            let path = node_path(d, &steps);
            old = Some(set_oci_tag(source, spec, &path, desired, patch)?);
        }
        old.ok_or_else(|| not_found(desired, "OCIRepository"))
    }
}
