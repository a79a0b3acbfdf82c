//! Where an image's tag is written: kustomization `images:` entries, values paths (Helm and
//! any YAML), the containers of plain Kubernetes manifests, and marker comments. Each target
//! turns "this image should now be `repo:tag@digest`" into a [`Patch`] of one file, or says why
//! it cannot.
//!
//! Every target first checks **ownership**: it rewrites a value only when the value refers to
//! the image being updated (or to a repository the image `replaces`), and it checks what the
//! file renders, not just the bytes it changes: a kustomization's `newName` and `digest`, a
//! chart's `registry` and `digest` keys beside the tag. Anything else is refused with the line
//! and what to do.
//!
//! - [`kustomization`]: `images:` entries, the way `kustomize edit set image` writes them.
//! - [`values`]: dotted paths in Helm values files and any other YAML.
//! - [`manifest`]: containers of workloads in plain manifests.
//! - [`marker`]: values marked by a comment (our own form and Flux's).
//!
//! - [`chart`]: where a Helm chart's version is written, for chart sources.
//!
//! Each is a [`Kind`]. A new kind of target is a file here, its variant of
//! [`Target`](crate::config::Target) with its checks in `config/validate/targets.rs`, and a
//! line in [`kind_of`].

pub mod chart;
mod kustomization;
mod manifest;
mod marker;
mod values;

use super::yaml::{self, Node, NodePath, Patch, Plain, Step, Yaml, YamlError, error};
use crate::config::{Segment, Target, ValuePath};
use crate::reference::{Reference, canonical_registry};

/// What an image should be set to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The image as the config names it, normalized (`ghcr.io/org/api`,
    /// `docker.io/library/nginx`).
    pub repository: String,
    /// The image as people write it (`nginx`), for values that hold a whole reference.
    pub written: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// Repositories this image took over; values naming them are rewritten to `written`.
    pub replaces: Vec<String>,
    /// For a chart: the repository its files name it by and its name; `tag` is its version.
    /// Only chart targets write a chart, and only image targets an image.
    pub chart: Option<(String, String)>,
}

/// Whose image a value in a file names, judged against a [`Desired`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The image being updated (in any spelling: `nginx`, `docker.io/library/nginx`).
    Ours,
    /// A repository the image replaces: the value moves to the new name.
    Replaced,
    /// Another image: nothing is written.
    Other,
}

/// `registry/path` with Docker Hub's aliases folded, or `None` for what is not a reference.
fn normalized(text: &str) -> Option<String> {
    let r = Reference::parse(text).ok()?;
    Some(format!("{}/{}", canonical_registry(&r.domain), r.path))
}

impl Desired {
    /// What writing `tag` (and `digest`, when it is written) of `image` asks of its targets:
    /// an image's repository and the names it replaces, or a chart's repository and name.
    pub fn of(
        image: &crate::config::Image,
        tag: Option<String>,
        digest: Option<String>,
    ) -> Desired {
        Desired {
            repository: image.reference.repository(),
            written: image.reference.familiar_repository(),
            tag,
            digest,
            replaces: image.replaces.clone(),
            chart: image.source.chart(&image.reference),
        }
    }

    /// What is written, as a commit names it: the image's repository, or the chart and the
    /// repository it comes from (`chart podinfo from https://stefanprodan.github.io/podinfo`).
    pub fn named(&self) -> String {
        match &self.chart {
            Some((repository, name)) => format!("chart {name} from {repository}"),
            None => self.repository.clone(),
        }
    }

    /// `:tag@digest`, `:tag` or `@digest`.
    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// What the change looks like in a commit message: `v1.5.0` or `latest@sha256:…`.
    pub fn describe(&self) -> String {
        self.suffix().trim_start_matches(':').to_string()
    }

    /// Whose image `name` (a repository, with or without tag) is.
    pub(crate) fn owner(&self, name: &str) -> Owner {
        let Some(name) = normalized(name) else {
            return Owner::Other;
        };
        if normalized(&self.repository).as_deref() == Some(name.as_str()) {
            Owner::Ours
        } else if self
            .replaces
            .iter()
            .any(|r| normalized(r).as_deref() == Some(name.as_str()))
        {
            Owner::Replaced
        } else {
            Owner::Other
        }
    }

    /// Whether the image's name lies under `prefix` (a registry, or a registry and a path
    /// the chart completes): `docker.io/istio` for `docker.io/istio/proxyv2`.
    pub(crate) fn under(&self, prefix: &str) -> bool {
        let ours = normalized(&self.repository).unwrap_or_else(|| self.repository.clone());
        // A prefix is a host and a path, not an image: `docker.io/istio` is not
        // `docker.io/library/istio`. Only the host's aliases are folded.
        // A first part without a dot, a port or `localhost` is a Docker Hub namespace, as in
        // image names (`istio` for `docker.io/istio`).
        let prefix = prefix.trim_end_matches('/');
        let (first, rest) = prefix.split_once('/').unwrap_or((prefix, ""));
        let prefix = if first.contains(['.', ':']) || first == "localhost" {
            let host = canonical_registry(first);
            if rest.is_empty() {
                host.to_string()
            } else {
                format!("{host}/{rest}")
            }
        } else {
            format!("docker.io/{prefix}")
        };
        ours.len() > prefix.len() + 1
            && ours.starts_with(&prefix)
            && ours.as_bytes()[prefix.len()] == b'/'
    }

    /// The registry host and the path inside it, for charts that keep them apart.
    fn registry_and_path(&self) -> (&str, &str) {
        self.repository
            .split_once('/')
            .unwrap_or(("", self.repository.as_str()))
    }

    /// The refusal for a value that names another image (`found`, as written).
    fn not_ours(&self, what: &str, found: &str) -> YamlError {
        let (repository, _, _) = split_image(found);
        error(format!(
            "{what} runs {found}, not {}: nothing written. If {} replaces it, add replaces = [\"{repository}\"] to the image; otherwise point the target at the image's own value",
            self.repository, self.repository
        ))
    }
}

/// The planned change to one file.
#[derive(Debug, Clone)]
pub struct FileEdit {
    /// The value before, as found in the file, for messages (`v1.4.0`; `""` for an empty
    /// value, `(none)` where there was none).
    pub old: String,
    pub new_text: String,
}

/// One kind of target: how a file of that kind names an image, and how it is edited to name
/// another. Each kind is a file of this folder; [`kind_of`] is the one place that maps a
/// configured [`Target`] to its kind.
trait Kind {
    /// Plans the edit of `yaml` (parsed from `source`) into `patch`, after checking that what
    /// it rewrites is the image's; returns the value before, as found.
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &Desired,
        patch: &mut Patch,
    ) -> Result<String, YamlError>;
}

/// The kind of `target`, with its settings.
fn kind_of(target: &Target) -> Box<dyn Kind + '_> {
    match target {
        Target::Kustomization { name, .. } => Box::new(kustomization::Kustomization { name }),
        Target::Helm { values, .. } => Box::new(values::Values {
            paths: values,
            documents: None,
        }),
        Target::Yaml {
            values, documents, ..
        } => Box::new(values::Values {
            paths: values,
            documents: Some(documents),
        }),
        Target::Manifest { container, .. } => Box::new(manifest::Manifest {
            container: container.as_deref(),
        }),
        Target::Marker { marker, .. } => Box::new(marker::Marked(marker)),
        Target::Chart(chart) => Box::new(chart::Chart(chart)),
    }
}

/// Plans the edit of `source` for `target`; `None` when the file already says this.
pub fn edit(
    target: &Target,
    source: &str,
    desired: &Desired,
) -> Result<Option<FileEdit>, YamlError> {
    planned(source, |yaml, patch| {
        kind_of(target).edit(yaml, source, desired, patch)
    })
}

/// Parses `source`, has `plan` fill a patch (returning the value before), and applies it;
/// `None` when the patch is empty. Every kind of target, image or chart, edits through this.
fn planned(
    source: &str,
    plan: impl FnOnce(&Yaml, &mut Patch) -> Result<String, YamlError>,
) -> Result<Option<FileEdit>, YamlError> {
    let yaml = Yaml::parse(source)?;
    let mut patch = Patch::default();
    let old = plan(&yaml, &mut patch)?;
    if patch.is_empty() {
        return Ok(None);
    }
    let new_text = patch.apply(source, &yaml)?;
    Ok(Some(FileEdit { old, new_text }))
}

/// Writes `value` at the scalar `node` (at `path` under the document `root`). An anchored
/// value (`image: &go golang:1.26`) is written when every alias of it stands under the same
/// key as the anchor (`image: *go` in each job): they all name the same image, and all move
/// with it. An alias under another key would change with it unasked, so that is refused,
/// naming the aliases.
fn set_value(
    source: &str,
    root: &Node,
    patch: &mut Patch,
    node: &Node,
    path: NodePath,
    value: &str,
    what: &str,
) -> Result<(), YamlError> {
    let Node::Scalar {
        anchor,
        tagged: false,
        ..
    } = node
    else {
        return patch.set_scalar(node, path, value, what);
    };
    if *anchor == 0 {
        return patch.set_scalar(node, path, value, what);
    }
    let key = key_at(root, &path.steps);
    let sites = yaml::alias_sites(root, path.document, *anchor);
    let strays: Vec<String> = sites
        .iter()
        .filter(|s| s.key != key)
        .map(|s| {
            format!(
                "line {} (under `{}`)",
                yaml::line(source, s.start),
                s.key.as_deref().unwrap_or("a list")
            )
        })
        .collect();
    if !strays.is_empty() {
        return Err(at_line(
            source,
            node.start(),
            format!(
                "{what} is anchored, and aliases of it stand under other keys than `{}`: {}; writing it would change them too, so nothing is written. Give the image its own value, or point the target there",
                key.as_deref().unwrap_or("a list"),
                strays.join(", ")
            ),
        ));
    }
    let aliases: Vec<NodePath> = sites.into_iter().map(|s| s.path).collect();
    patch.set_anchored(source, node, path, &aliases, value, what)
}

/// The key whose value the node at `steps` is (none for a list item or the root).
fn key_at(root: &Node, steps: &[Step]) -> Option<String> {
    let mut node = root;
    let mut key = None;
    for step in steps {
        match (step, node) {
            (Step::Value(i), Node::Map { entries, .. }) => {
                let (k, v) = entries.get(*i)?;
                key = k.as_str().map(str::to_string);
                node = v;
            }
            (Step::Item(i), Node::Seq { items, .. }) => {
                node = items.get(*i)?;
                key = None;
            }
            _ => return None,
        }
    }
    key
}

/// The refusal for an alias (`image: *go`) where a value is written: the value lives where
/// it is anchored.
fn alias_refusal(source: &str, root: &Node, alias: &Node, what: &str) -> YamlError {
    let Node::Alias { anchor, .. } = alias else {
        return error(format!("{what} is not a single value"));
    };
    let line = yaml::anchored(root, *anchor).map(|n| yaml::line(source, n.start()));
    at_line(
        source,
        alias.start(),
        match line {
            Some(line) => format!(
                "{what} is an alias (*) of the value anchored on line {line}: nothing written here; the value is written where it is anchored, so point the target at line {line}'s key"
            ),
            None => format!("{what} is an alias of an anchor this document does not define"),
        },
    )
}

/// Prefixes a message with the line of byte `at`.
fn at_line(source: &str, at: usize, message: impl std::fmt::Display) -> YamlError {
    error(format!("line {}: {message}", yaml::line(source, at)))
}

/// The value at `key` of a mapping, with its entry index; a key written twice is refused,
/// since YAML readers disagree about which one counts (most take the last).
fn entry<'a>(
    source: &str,
    node: &'a Node,
    key: &str,
) -> Result<Option<(usize, &'a Node)>, YamlError> {
    let Node::Map { entries, .. } = node else {
        return Ok(None);
    };
    let mut found = entries
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k.as_str() == Some(key));
    let first = found.next();
    if let (Some((_, (a, _))), Some((_, (b, _)))) = (first, found.next()) {
        return Err(error(format!(
            "`{key}` is written twice, on lines {} and {}: tools disagree about which counts, so nothing is written; remove one",
            yaml::line(source, a.start()),
            yaml::line(source, b.start())
        )));
    }
    Ok(first.map(|(i, (_, v))| (i, v)))
}

/// The string value at `key`, if it is a scalar.
fn scalar<'a>(source: &str, node: &'a Node, key: &str) -> Result<Option<&'a str>, YamlError> {
    Ok(entry(source, node, key)?.and_then(|(_, v)| v.as_str()))
}

fn single_document<'a>(yaml: &'a Yaml, what: &str) -> Result<&'a Node, YamlError> {
    match yaml.documents.as_slice() {
        [doc] => Ok(doc),
        [] => Err(error(format!("{what} is empty"))),
        _ => Err(error(format!(
            "{what} has several YAML documents; expected one (the yaml target takes several)"
        ))),
    }
}

/// Why a path did not lead to a value.
enum Miss {
    /// Some part of the path is not in the document.
    Absent(YamlError),
    /// The path is there but cannot be used (an anchor, a duplicate key, an ambiguous item).
    Bad(YamlError),
    /// The value there names another image.
    Other(YamlError),
}

impl From<Miss> for YamlError {
    fn from(miss: Miss) -> YamlError {
        match miss {
            Miss::Absent(e) | Miss::Bad(e) | Miss::Other(e) => e,
        }
    }
}

/// The node at `path` under `root`, with its steps.
fn lookup<'a>(
    source: &str,
    root: &'a Node,
    path: &ValuePath,
) -> Result<(&'a Node, Vec<Step>), Miss> {
    let mut node = root;
    let mut steps = Vec::new();
    for (depth, segment) in path.0.iter().enumerate() {
        let here = || ValuePath(path.0[..=depth].to_vec()).to_string();
        let next = match (segment, node) {
            (Segment::Key(k), Node::Seq { items, .. }) if k.bytes().all(|b| b.is_ascii_digit()) => {
                let i: usize = k
                    .parse()
                    .map_err(|_| Miss::Bad(error(format!("`{}`: index out of range", here()))))?;
                items.get(i).map(|n| (Step::Item(i), n))
            }
            (Segment::Key(k), _) => entry(source, node, k)
                .map_err(Miss::Bad)?
                .map(|(i, n)| (Step::Value(i), n)),
            (Segment::Index(i), Node::Seq { items, .. }) => {
                items.get(*i).map(|n| (Step::Item(*i), n))
            }
            (Segment::Select { key, value }, Node::Seq { items, .. }) => {
                let mut matching = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if scalar(source, item, key).map_err(Miss::Bad)? == Some(value.as_str()) {
                        matching.push((i, item));
                    }
                }
                if let [(_, a), (_, b), ..] = matching.as_slice() {
                    return Err(Miss::Bad(error(format!(
                        "`{}` matches two items, on lines {} and {}; nothing written",
                        here(),
                        yaml::line(source, a.start()),
                        yaml::line(source, b.start())
                    ))));
                }
                matching.first().map(|(i, n)| (Step::Item(*i), *n))
            }
            _ => None,
        };
        let Some((step, child)) = next else {
            return Err(Miss::Absent(error(format!(
                "no `{}` in the file; add `{path}` once, image-updater keeps it current",
                here()
            ))));
        };
        if matches!(
            child,
            Node::Map {
                decorated: true,
                ..
            } | Node::Seq {
                decorated: true,
                ..
            }
        ) {
            return Err(Miss::Bad(at_line(
                source,
                child.start(),
                format!(
                    "`{}` has an anchor or a tag: anything written inside it would also change every alias of it; write `{path}` outside the anchor",
                    here()
                ),
            )));
        }
        if depth + 1 == path.0.len() && matches!(child, Node::Alias { .. }) {
            return Err(Miss::Bad(alias_refusal(
                source,
                root,
                child,
                &format!("`{path}`"),
            )));
        }
        steps.push(step);
        node = child;
    }
    Ok((node, steps))
}

/// Splits `repo:tag@digest` into the repository as written, the tag and the digest (the way
/// kustomize's `image.Split` does: a `:` in the registry host is not a tag).
pub fn split_image(value: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match value.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (value, None),
    };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..]), digest),
        None => (rest, None, digest),
    }
}

/// A value as messages show it: `v1.4.0`, `v1@sha256:…`; `""` when empty, `(none)` when absent.
fn describe_old(tag: Option<&str>, digest: Option<&str>) -> String {
    let shown = |v: &str| {
        if is_empty_value(v) {
            "\"\"".to_string()
        } else {
            v.to_string()
        }
    };
    match (tag, digest.filter(|d| !is_empty_value(d))) {
        (Some(t), Some(d)) => format!("{}@{d}", shown(t)),
        (Some(t), None) => shown(t),
        (None, Some(d)) => d.to_string(),
        (None, None) => "(none)".into(),
    }
}

/// An empty or null YAML value (`tag:`, `tag: ""`, `tag: ~`).
fn is_empty_value(v: &str) -> bool {
    matches!(v, "" | "~" | "null" | "Null" | "NULL")
}

/// Adds `key: value` to the entry: after its last line in a block mapping, before the `}` in
/// a flow mapping.
fn add_key(
    source: &str,
    item: &Node,
    path: NodePath,
    key: &str,
    value: &str,
    patch: &mut Patch,
    what: &str,
) -> Result<(), YamlError> {
    let Node::Map { flow, entries, .. } = item else {
        return Err(error(format!("{what}: internal: not a mapping")));
    };
    let rendered = yaml::render(value, yaml::Style::Plain);
    let at;
    let mut text = String::new();
    if *flow {
        let last = entries
            .last()
            .ok_or_else(|| error(format!("{what}: the entry is empty; fill it by hand")))?;
        at = last.1.end();
        text.push_str(&format!(", {key}: {rendered}"));
    } else {
        let col = yaml::column(source, entries[0].0.start());
        at = yaml::end_of_line(source, item.end());
        if at == source.len() && !source.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{}{key}: {rendered}\n", " ".repeat(col)));
    }
    patch.add_entry(at, text, path, key, Plain::Scalar(value.to_string()));
    Ok(())
}

/// The node path in document `document` after `steps`.
fn node_path(document: usize, steps: &[Step]) -> NodePath {
    NodePath {
        document,
        steps: steps.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_values_split_into_repository_and_the_rest() {
        assert_eq!(
            split_image("ghcr.io/org/api:v1.4.0"),
            ("ghcr.io/org/api", Some("v1.4.0"), None)
        );
        assert_eq!(
            split_image("localhost:5000/app"),
            ("localhost:5000/app", None, None)
        );
        assert_eq!(
            split_image("nginx:1.27@sha256:ab"),
            ("nginx", Some("1.27"), Some("sha256:ab"))
        );
        assert_eq!(
            split_image("app@sha256:ab"),
            ("app", None, Some("sha256:ab"))
        );
        assert_eq!(describe_old(Some(""), None), "\"\"");
        assert_eq!(describe_old(None, None), "(none)");
    }

    #[test]
    fn ownership_folds_docker_hub_spellings() {
        let d = Desired {
            repository: "docker.io/library/nginx".into(),
            written: "nginx".into(),
            tag: Some("1.27".into()),
            digest: None,
            replaces: vec!["registry.example.com/mirror/nginx".into()],
            chart: None,
        };
        for same in [
            "nginx",
            "docker.io/nginx",
            "index.docker.io/library/nginx:1",
            "registry-1.docker.io/library/nginx",
        ] {
            assert_eq!(d.owner(same), Owner::Ours, "{same}");
        }
        assert_eq!(
            d.owner("registry.example.com/mirror/nginx:1.2"),
            Owner::Replaced
        );
        assert_eq!(d.owner("ghcr.io/org/nginx"), Owner::Other);
        assert_eq!(d.owner("{{ .Values.image }}"), Owner::Other);
    }

    #[test]
    fn a_prefix_is_a_host_and_a_path_not_an_image() {
        let d = Desired {
            repository: "docker.io/istio/proxyv2".into(),
            written: "istio/proxyv2".into(),
            tag: None,
            digest: None,
            replaces: Vec::new(),
            chart: None,
        };
        for under in [
            "docker.io/istio",
            "index.docker.io/istio/",
            "istio",
            "docker.io",
        ] {
            assert!(d.under(under), "{under}");
        }
        for not in [
            "docker.io/istio/proxyv2",
            "docker.io/ist",
            "registry.example.com/mirror",
            "quay.io",
        ] {
            assert!(!d.under(not), "{not}");
        }
    }
}
