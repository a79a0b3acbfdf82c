//! Where a Helm chart's version is written, byte-exact like the image targets, and under the
//! same ownership rule: only the chart named there, by its repository and name, is touched.
//!
//! - [`flux`]: a Flux `HelmRelease` (`spec.chart.spec.version`, or the tag of the
//!   `OCIRepository` its chart template makes) and an `OCIRepository` (`spec.ref.tag`);
//! - [`argocd`]: an Argo CD `Application` or `ApplicationSet` source (`targetRevision`);
//! - [`dependency`]: a `Chart.yaml` dependency (`version`);
//! - [`kustomize`]: a kustomization's `helmCharts` entry (`version`).
//!
//! A version that is a range (`6.5.*`, `2.x.x`, `>= 1.0.0`) is refused rather than pinned:
//! the tool reading it chooses within the range by itself, and whoever wrote one meant that.
//! Each kind is a [`ChartKind`]; a new one is a file here, its variant of
//! [`ChartTarget`](crate::config::ChartTarget), and a line in [`kind_of`].

mod argocd;
mod dependency;
mod flux;
mod kustomize;

use super::{FileEdit, add_key, at_line, entry, is_empty_value, node_path, planned, scalar};
use crate::config::ChartTarget;
use crate::writeback::yaml::{Node, NodePath, Patch, Step, Yaml, YamlError, error};

/// The version a chart should be at, and which chart it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartVersion {
    /// The repository holding the chart: a chart repository's url
    /// (`https://kubernetes.github.io/ingress-nginx`) or an OCI repository
    /// (`oci://ghcr.io/org/charts`), without the chart's name.
    pub repository: String,
    /// The chart's name (`ingress-nginx`).
    pub name: String,
    /// The version, as Helm writes it (`1.2.3+build.4`).
    pub version: String,
}

/// A repository url as tools compare them: no trailing slash, the scheme and host in lower
/// case, and without `oci://`, which Argo CD's OCI sources leave out.
fn normalized_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url.split_once("://").unwrap_or(("oci", url));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let scheme = scheme.to_ascii_lowercase();
    let scheme = if scheme == "oci" {
        String::new()
    } else {
        format!("{scheme}://")
    };
    if path.is_empty() {
        format!("{scheme}{}", host.to_ascii_lowercase())
    } else {
        format!("{scheme}{}/{path}", host.to_ascii_lowercase())
    }
}

impl ChartVersion {
    /// Whether `url` names this chart's repository.
    fn same_repository(&self, url: &str) -> bool {
        normalized_url(url) == normalized_url(&self.repository)
    }

    /// Whether `url` names the chart itself in an OCI repository
    /// (`oci://ghcr.io/org/charts/ingress`), as an `OCIRepository` and Argo CD's OCI sources
    /// do.
    fn is_chart_url(&self, url: &str) -> bool {
        self.is_oci()
            && url
                .trim()
                .trim_end_matches('/')
                .rsplit_once('/')
                .is_some_and(|(repository, name)| {
                    name == self.name && self.same_repository(repository)
                })
    }

    fn is_oci(&self) -> bool {
        self.repository.starts_with("oci://")
    }

    /// The version as an OCI tag: Helm writes `+` as `_` there.
    fn tag(&self) -> String {
        self.version.replace('+', "_")
    }

    /// The chart as messages name it: `ingress-nginx from https://…`.
    fn describe(&self) -> String {
        format!("chart {} from {}", self.name, self.repository)
    }
}

/// One kind of file that pins a chart's version.
trait ChartKind {
    /// Plans the edit of `yaml` (parsed from `source`) into `patch`; returns the version
    /// before, as found (`(none)` where there was none).
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &ChartVersion,
        patch: &mut Patch,
    ) -> Result<String, YamlError>;
}

fn kind_of(target: &ChartTarget) -> Box<dyn ChartKind> {
    match target {
        ChartTarget::HelmRelease { .. } => Box::new(flux::HelmRelease),
        ChartTarget::OciRepository { .. } => Box::new(flux::OciRepository),
        ChartTarget::ArgoCd { .. } => Box::new(argocd::ArgoCd),
        ChartTarget::ChartDependency { .. } => Box::new(dependency::Dependency),
        ChartTarget::KustomizeHelm { .. } => Box::new(kustomize::HelmCharts),
    }
}

/// A chart target as one of the [`Kind`](super::Kind)s of target: it writes the chart a
/// [`Desired`] names, and refuses an image's.
pub(super) struct Chart<'a>(pub &'a ChartTarget);

impl super::Kind for Chart<'_> {
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &super::Desired,
        patch: &mut Patch,
    ) -> Result<String, YamlError> {
        let (Some((repository, name)), Some(version)) = (&desired.chart, &desired.tag) else {
            return Err(error(format!(
                "{} is an image; a chart target writes a chart's version",
                desired.repository
            )));
        };
        let wanted = ChartVersion {
            repository: repository.clone(),
            name: name.clone(),
            version: version.clone(),
        };
        kind_of(self.0).edit(yaml, source, &wanted, patch)
    }
}

/// Plans the edit of `source` for `target`; `None` when the file already says this.
pub fn edit(
    target: &ChartTarget,
    source: &str,
    desired: &ChartVersion,
) -> Result<Option<FileEdit>, YamlError> {
    planned(source, |yaml, patch| {
        kind_of(target).edit(yaml, source, desired, patch)
    })
}

/// Whether `version` is one version rather than a range Helm or Flux picks within.
fn is_one_version(version: &str) -> bool {
    semver::Version::parse(version.trim().trim_start_matches('v')).is_ok()
}

/// Sets `key` of the mapping `map` (at `path`) to `value`, adding the key after the
/// mapping's last line when it is absent. A range there is refused: its reader chooses by
/// itself. Returns the value before.
fn set_version(
    source: &str,
    map: &Node,
    path: &NodePath,
    key: &str,
    value: &str,
    patch: &mut Patch,
) -> Result<String, YamlError> {
    let Some((i, node)) = entry(source, map, key)? else {
        add_key(source, map, path.clone(), key, value, patch, key)?;
        return Ok("(none)".into());
    };
    let current = node
        .as_str()
        .ok_or_else(|| at_line(source, node.start(), format!("`{key}` is not a value")))?;
    let empty = is_empty_value(current);
    if !empty && !is_one_version(current) && current != value {
        return Err(at_line(
            source,
            node.start(),
            format!(
                "`{key}: {current}` is a range or a moving tag, which its reader resolves by \
                 itself: nothing written. Write one version there for image-updater to move it"
            ),
        ));
    }
    let mut at = path.clone();
    at.steps.push(Step::Value(i));
    patch.set_scalar(node, at, value, key)?;
    Ok(if empty {
        "(none)".into()
    } else {
        current.to_string()
    })
}

/// The documents of a given `kind:` (`HelmRelease`), with their index.
fn documents_of<'a>(
    yaml: &'a Yaml,
    source: &str,
    kinds: &[&str],
) -> Result<Vec<(usize, &'a Node)>, YamlError> {
    let mut out = Vec::new();
    for (d, doc) in yaml.documents.iter().enumerate() {
        if scalar(source, doc, "kind")?.is_some_and(|k| kinds.contains(&k)) {
            out.push((d, doc));
        }
    }
    Ok(out)
}

/// The map at `keys` under `node`, with the steps to it.
fn walk<'a>(
    source: &str,
    node: &'a Node,
    keys: &[&str],
) -> Result<Option<(&'a Node, Vec<Step>)>, YamlError> {
    let mut at = node;
    let mut steps = Vec::new();
    for key in keys {
        let Some((i, next)) = entry(source, at, key)? else {
            return Ok(None);
        };
        steps.push(Step::Value(i));
        at = next;
    }
    Ok(Some((at, steps)))
}

/// The version of the entries of a one-document file's `list` (`dependencies`, `helmCharts`)
/// whose `name` is the chart's and whose `repo_key` names its repository; `check` looks at
/// each entry of that name first, and may refuse it.
fn set_in_entries(
    yaml: &Yaml,
    source: &str,
    desired: &ChartVersion,
    patch: &mut Patch,
    (list, repo_key, what): (&str, &str, &str),
    check: impl Fn(&Node, &str) -> Result<(), YamlError>,
) -> Result<String, YamlError> {
    let [root] = yaml.documents.as_slice() else {
        return Err(error(format!("a file with a {what} is one YAML document")));
    };
    let mut old = None;
    for (item, steps) in items(source, root, &[], list)? {
        if scalar(source, item, "name")? != Some(desired.name.as_str()) {
            continue;
        }
        let repository = scalar(source, item, repo_key)?.unwrap_or_default();
        check(item, repository)?;
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
    old.ok_or_else(|| not_found(desired, what))
}

/// The refusal when nothing in the file is the chart.
fn not_found(desired: &ChartVersion, what: &str) -> YamlError {
    error(format!(
        "no {what} in the file installs {}: nothing written",
        desired.describe()
    ))
}

/// Items of a sequence under `key`, with the steps to each.
fn items<'a>(
    source: &str,
    node: &'a Node,
    steps: &[Step],
    key: &str,
) -> Result<Vec<(&'a Node, Vec<Step>)>, YamlError> {
    let Some((i, Node::Seq { items, .. })) = entry(source, node, key)? else {
        return Ok(Vec::new());
    };
    Ok(items
        .iter()
        .enumerate()
        .map(|(n, item)| {
            let mut at = steps.to_vec();
            at.extend([Step::Value(i), Step::Item(n)]);
            (item, at)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(repository: &str, name: &str) -> ChartVersion {
        ChartVersion {
            repository: repository.into(),
            name: name.into(),
            version: "1.2.3+build.4".into(),
        }
    }

    #[test]
    fn repositories_are_compared_as_tools_read_them() {
        let https = chart(
            "https://Kubernetes.github.io/ingress-nginx/",
            "ingress-nginx",
        );
        assert!(https.same_repository("https://kubernetes.github.io/ingress-nginx"));
        assert!(!https.same_repository("https://kubernetes.github.io/other"));
        let oci = chart("oci://ghcr.io/org/charts", "ingress");
        assert!(oci.same_repository("ghcr.io/org/charts"));
        assert!(oci.is_chart_url("oci://ghcr.io/org/charts/ingress"));
        assert!(!oci.is_chart_url("oci://ghcr.io/org/charts/other"));
        assert!(!https.is_chart_url("https://kubernetes.github.io/ingress-nginx/ingress-nginx"));
        assert_eq!(oci.tag(), "1.2.3_build.4");
        assert!(is_one_version("22.1.1") && is_one_version("v1.0.0-rc.1"));
        assert!(
            !is_one_version("2.x.x") && !is_one_version("6.5.*") && !is_one_version(">= 6.0.0")
        );
    }

    fn written(target: ChartTarget, source: &str, desired: &ChartVersion) -> String {
        edit(&target, source, desired).unwrap().unwrap().new_text
    }

    #[test]
    fn oci_sources_take_the_version_as_a_tag() {
        let desired = chart("oci://ghcr.io/org/charts", "api");
        let file = std::path::PathBuf::from("f.yaml");
        let repository = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata:\n  name: api\nspec:\n  url: oci://ghcr.io/org/charts/api\n  ref:\n    tag: 1.2.2 # pinned\n";
        assert_eq!(
            written(
                ChartTarget::OciRepository { file: file.clone() },
                repository,
                &desired
            ),
            repository.replace("tag: 1.2.2", "tag: 1.2.3_build.4")
        );
        let template = "kind: HelmRelease\nspec:\n  chart:\n    kind: OCIRepository\n    spec:\n      url: oci://ghcr.io/org/charts/api\n      ref:\n        tag: \"1.0.0\"\n";
        assert_eq!(
            written(
                ChartTarget::HelmRelease { file: file.clone() },
                template,
                &desired
            ),
            template.replace("\"1.0.0\"", "\"1.2.3_build.4\"")
        );
        let other = repository.replace("charts/api", "charts/web");
        let refused = edit(&ChartTarget::OciRepository { file }, &other, &desired).unwrap_err();
        assert!(
            refused
                .message
                .contains("no OCIRepository in the file installs chart api")
        );
    }

    #[test]
    fn a_dependency_named_by_a_repository_alias_is_refused() {
        let file = std::path::PathBuf::from("Chart.yaml");
        let text = "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n- name: redis\n  version: 17.0.0\n  repository: \"@bitnami\"\n";
        let desired = chart("https://charts.bitnami.com/bitnami", "redis");
        let refused = edit(&ChartTarget::ChartDependency { file }, text, &desired).unwrap_err();
        assert!(
            refused
                .message
                .contains("line 5: dependency redis names the repository alias `@bitnami`"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn a_helm_repository_in_the_same_file_must_be_the_charts() {
        let file = std::path::PathBuf::from("f.yaml");
        let text = "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: podinfo\nspec:\n  url: https://stefanprodan.github.io/podinfo\n---\nkind: HelmRelease\nspec:\n  chart:\n    spec:\n      chart: podinfo\n      version: 6.9.0\n      sourceRef:\n        kind: HelmRepository\n        name: podinfo\n";
        let ours = chart("https://stefanprodan.github.io/podinfo/", "podinfo");
        assert_eq!(
            written(ChartTarget::HelmRelease { file: file.clone() }, text, &ours),
            text.replace("version: 6.9.0", "version: 1.2.3+build.4")
        );
        let theirs = chart("https://charts.example.com", "podinfo");
        let refused = edit(&ChartTarget::HelmRelease { file }, text, &theirs).unwrap_err();
        assert!(
            refused.message.contains(
                "comes from HelmRepository podinfo at https://stefanprodan.github.io/podinfo"
            ),
            "{}",
            refused.message
        );
    }
}
