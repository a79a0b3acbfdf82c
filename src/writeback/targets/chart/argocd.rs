//! Argo CD: the `targetRevision` of an `Application`'s source (`spec.source`, each of
//! `spec.sources`) or an `ApplicationSet`'s template's. A source is the chart's when its
//! `chart` is the chart's name and its `repoURL` the chart's repository, or, in Argo CD's
//! OCI form without `chart`, when its `repoURL` is the chart itself
//! (`oci://registry-1.docker.io/bitnamicharts/nginx`).

use super::{
    ChartKind, ChartVersion, documents_of, items, node_path, not_found, scalar, set_version, walk,
};
use crate::writeback::yaml::{Node, Patch, Step, Yaml, YamlError};

pub(super) struct ArgoCd;

impl ChartKind for ArgoCd {
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &ChartVersion,
        patch: &mut Patch,
    ) -> Result<String, YamlError> {
        let mut old = None;
        for (d, doc) in documents_of(yaml, source, &["Application", "ApplicationSet"])? {
            for (source_node, steps) in sources(source, doc)? {
                let url = scalar(source, source_node, "repoURL")?.unwrap_or_default();
                let ours = match scalar(source, source_node, "chart")? {
                    Some(chart) => chart == desired.name && desired.same_repository(url),
                    None => desired.is_chart_url(url),
                };
                if ours {
                    let path = node_path(d, &steps);
                    old = Some(set_version(
                        source,
                        source_node,
                        &path,
                        "targetRevision",
                        &desired.version,
                        patch,
                    )?);
                }
            }
        }
        old.ok_or_else(|| not_found(desired, "Argo CD Application source"))
    }
}

/// The sources of an Application (`spec`) or of an ApplicationSet's template
/// (`spec.template.spec`), with their steps.
fn sources<'a>(source: &str, doc: &'a Node) -> Result<Vec<(&'a Node, Vec<Step>)>, YamlError> {
    let mut out = Vec::new();
    for keys in [&["spec"][..], &["spec", "template", "spec"][..]] {
        let Some((spec, steps)) = walk(source, doc, keys)? else {
            continue;
        };
        if let Some((single, more)) = walk(source, spec, &["source"])? {
            let mut at = steps.clone();
            at.extend(more);
            out.push((single, at));
        }
        out.extend(items(source, spec, &steps, "sources")?);
    }
    Ok(out)
}
