//! Where an image's tag is written: kustomization `images:` entries, Helm values paths, and
//! the containers of plain Kubernetes manifests. Each target turns "this image should now be
//! `repo:tag@digest`" into a [`Patch`] of one file, or says why it cannot.

use super::yaml::{self, Node, NodePath, Patch, Plain, Step, Yaml, YamlError, error};
use crate::config::{HelmValues, Target, ValuePath};
use crate::reference::Reference;

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
}

impl Desired {
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
}

/// The planned change to one file.
#[derive(Debug, Clone)]
pub struct FileEdit {
    /// The value before, as found in the file, for messages (`v1.4.0`, or `(none)`).
    pub old: String,
    pub new_text: String,
}

/// Plans the edit of `source` for `target`; `None` when the file already says this.
pub fn edit(
    target: &Target,
    source: &str,
    desired: &Desired,
) -> Result<Option<FileEdit>, YamlError> {
    let yaml = Yaml::parse(source)?;
    let mut patch = Patch::default();
    let old = match target {
        Target::Kustomization { name, .. } => {
            kustomization(&yaml, source, name, desired, &mut patch)?
        }
        Target::Helm { values, .. } => helm(&yaml, values, desired, &mut patch)?,
        Target::Manifest { container, .. } => {
            manifest(&yaml, container.as_deref(), desired, &mut patch)?
        }
    };
    if patch.is_empty() {
        return Ok(None);
    }
    let new_text = patch.apply(source, &yaml)?;
    Ok(Some(FileEdit { old, new_text }))
}

/// The value at `key` of a mapping, with its entry index.
fn entry<'a>(node: &'a Node, key: &str) -> Option<(usize, &'a Node)> {
    match node {
        Node::Map { entries, .. } => entries
            .iter()
            .enumerate()
            .find(|(_, (k, _))| k.as_str() == Some(key))
            .map(|(i, (_, v))| (i, v)),
        _ => None,
    }
}

fn single_document<'a>(yaml: &'a Yaml, what: &str) -> Result<&'a Node, YamlError> {
    match yaml.documents.as_slice() {
        [doc] => Ok(doc),
        [] => Err(error(format!("{what} is empty"))),
        _ => Err(error(format!(
            "{what} has several YAML documents; expected one"
        ))),
    }
}

fn kustomization(
    yaml: &Yaml,
    source: &str,
    name: &str,
    desired: &Desired,
    patch: &mut Patch,
) -> Result<String, YamlError> {
    let root = single_document(yaml, "the kustomization")?;
    let Node::Map { flow: false, .. } = root else {
        return Err(error("the kustomization is not a block mapping"));
    };
    let mut fields: Vec<(&str, String)> = Vec::new();
    if let Some(t) = &desired.tag {
        fields.push(("newTag", t.clone()));
    }
    if let Some(d) = &desired.digest {
        fields.push(("digest", d.clone()));
    }
    let Some((images_index, images)) = entry(root, "images") else {
        // No `images:` yet: append the list to the end of the file.
        let mut text = String::new();
        if !source.is_empty() && !source.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "images:\n- name: {}\n",
            yaml::render(name, yaml::Style::Plain)
        ));
        for (k, v) in &fields {
            text.push_str(&format!("  {k}: {}\n", yaml::render(v, yaml::Style::Plain)));
        }
        let mut item = vec![(Plain::Scalar("name".into()), Plain::Scalar(name.into()))];
        item.extend(
            fields
                .iter()
                .map(|(k, v)| (Plain::Scalar((*k).into()), Plain::Scalar(v.clone()))),
        );
        patch.add_entry(
            source.len(),
            text,
            NodePath {
                document: 0,
                steps: vec![],
            },
            "images",
            Plain::Seq(vec![Plain::Map(item)]),
        );
        return Ok("(none)".into());
    };
    let images_path = vec![Step::Value(images_index)];
    let Node::Seq { items, flow, .. } = images else {
        return Err(error("`images:` is not a list"));
    };
    let found = items
        .iter()
        .enumerate()
        .find(|(_, item)| item.get("name").and_then(Node::as_str) == Some(name));
    let Some((item_index, item)) = found else {
        if *flow || items.is_empty() {
            return Err(error(format!(
                "`images:` has no entry named {name}, and entries can only be added to a block list with items; add one by hand"
            )));
        }
        // Append an entry after the last one, at the same indentation.
        let last = items.last().expect("not empty");
        let dash_col = column_of_dash(source, last.start());
        let key_col = yaml::column(source, last.start());
        let at = yaml::end_of_line(source, last.end());
        let mut text = String::new();
        if at == source.len() && !source.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!(
            "{}-{}name: {}\n",
            " ".repeat(dash_col),
            " ".repeat(key_col.saturating_sub(dash_col + 1).max(1)),
            yaml::render(name, yaml::Style::Plain)
        ));
        for (k, v) in &fields {
            text.push_str(&format!(
                "{}{k}: {}\n",
                " ".repeat(key_col.max(dash_col + 2)),
                yaml::render(v, yaml::Style::Plain)
            ));
        }
        let mut entry_plain = vec![(Plain::Scalar("name".into()), Plain::Scalar(name.into()))];
        entry_plain.extend(
            fields
                .iter()
                .map(|(k, v)| (Plain::Scalar((*k).into()), Plain::Scalar(v.clone()))),
        );
        patch.add_item(
            at,
            text,
            NodePath {
                document: 0,
                steps: images_path,
            },
            Plain::Map(entry_plain),
        );
        return Ok("(none)".into());
    };
    let Node::Map { flow, entries, .. } = item else {
        unreachable!("found by key")
    };
    let old = describe_old(
        item.get("newTag").and_then(Node::as_str),
        item.get("digest").and_then(Node::as_str),
    );
    let mut item_path = images_path.clone();
    item_path.push(Step::Item(item_index));
    for (key, value) in &fields {
        match entry(item, key) {
            Some((i, node)) => {
                let mut path = item_path.clone();
                path.push(Step::Value(i));
                patch.set_scalar(
                    node,
                    NodePath {
                        document: 0,
                        steps: path,
                    },
                    value,
                    &format!("images[{name}].{key}"),
                )?;
            }
            None if *flow => {
                return Err(error(format!(
                    "images[{name}] is a flow mapping without `{key}`; add the key by hand"
                )));
            }
            None => {
                // Add the key after the entry's last line, aligned with its other keys.
                let col = yaml::column(source, entries[0].0.start());
                let at = yaml::end_of_line(source, item.end());
                let mut text = String::new();
                if at == source.len() && !source.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!(
                    "{}{key}: {}\n",
                    " ".repeat(col),
                    yaml::render(value, yaml::Style::Plain)
                ));
                patch.add_entry(
                    at,
                    text,
                    NodePath {
                        document: 0,
                        steps: item_path.clone(),
                    },
                    key,
                    Plain::Scalar(value.clone()),
                );
            }
        }
    }
    Ok(old)
}

/// The column of the `-` that introduces the sequence item starting at `item_start`.
fn column_of_dash(source: &str, item_start: usize) -> usize {
    let before = &source[..item_start];
    match before.rfind('-') {
        Some(i) if before[i + 1..].trim().is_empty() => yaml::column(source, i),
        _ => yaml::column(source, item_start).saturating_sub(2),
    }
}

fn describe_old(tag: Option<&str>, digest: Option<&str>) -> String {
    match (tag, digest) {
        (Some(t), Some(d)) => format!("{t}@{d}"),
        (Some(t), None) => t.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) => "(none)".into(),
    }
}

/// The node at a dotted path, with its node path.
fn lookup<'a>(root: &'a Node, path: &ValuePath) -> Result<(&'a Node, Vec<Step>), YamlError> {
    let mut node = root;
    let mut steps = Vec::new();
    for (depth, key) in path.0.iter().enumerate() {
        match entry(node, key) {
            Some((i, child)) => {
                steps.push(Step::Value(i));
                node = child;
                if matches!(
                    node,
                    Node::Map {
                        decorated: true,
                        ..
                    } | Node::Seq {
                        decorated: true,
                        ..
                    }
                ) {
                    let at = path.0[..=depth].join(".");
                    return Err(error(format!(
                        "`{at}` has an anchor or a tag: anything written inside it would also change every alias of it; write `{path}` outside the anchor"
                    )));
                }
            }
            None => {
                let at = path.0[..=depth].join(".");
                return Err(error(format!(
                    "no `{at}` in the values file; add `{path}` once, image-updater keeps it current"
                )));
            }
        }
    }
    Ok((node, steps))
}

fn helm(
    yaml: &Yaml,
    values: &HelmValues,
    desired: &Desired,
    patch: &mut Patch,
) -> Result<String, YamlError> {
    let root = single_document(yaml, "the values file")?;
    match values {
        HelmValues::Split { tag, repository } => {
            let (node, steps) = lookup(root, tag)?;
            let old = node.as_str().unwrap_or("(not a value)").to_string();
            let value = desired.describe();
            patch.set_scalar(
                node,
                NodePath { document: 0, steps },
                &value,
                &tag.to_string(),
            )?;
            if let Some(repo_path) = repository {
                let (node, steps) = lookup(root, repo_path)?;
                let current = node.as_str().unwrap_or_default();
                // Keep the repository as the file writes it when it names the same image.
                let same =
                    Reference::parse(current).is_ok_and(|r| r.repository() == desired.repository);
                if !same {
                    patch.set_scalar(
                        node,
                        NodePath { document: 0, steps },
                        &desired.written,
                        &repo_path.to_string(),
                    )?;
                }
            }
            Ok(old)
        }
        HelmValues::Combined { name } => {
            let (node, steps) = lookup(root, name)?;
            let current = node.as_str().unwrap_or_default();
            let (repo, old) = split_image(current);
            let repo = if Reference::parse(repo).is_ok_and(|r| r.repository() == desired.repository)
            {
                repo.to_string()
            } else {
                desired.written.clone()
            };
            patch.set_scalar(
                node,
                NodePath { document: 0, steps },
                &format!("{repo}{}", desired.suffix()),
                &name.to_string(),
            )?;
            Ok(old)
        }
    }
}

/// Splits `repo:tag@digest` into the repository as written and what follows it.
fn split_image(value: &str) -> (&str, String) {
    let (rest, digest) = match value.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (value, None),
    };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    (repo, describe_old(tag, digest))
}

const WORKLOADS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Pod",
    "ReplicationController",
];

fn manifest(
    yaml: &Yaml,
    container: Option<&str>,
    desired: &Desired,
    patch: &mut Patch,
) -> Result<String, YamlError> {
    let mut olds = Vec::new();
    for (document, doc) in yaml.documents.iter().enumerate() {
        let Some(kind) = doc.get("kind").and_then(Node::as_str) else {
            continue;
        };
        if !WORKLOADS.contains(&kind) {
            continue;
        }
        let pod_path: &[&str] = match kind {
            "Pod" => &["spec"],
            "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
            _ => &["spec", "template", "spec"],
        };
        let mut node = doc;
        let mut steps = Vec::new();
        let mut found = true;
        for key in pod_path {
            match entry(node, key) {
                Some((i, child)) => {
                    steps.push(Step::Value(i));
                    node = child;
                }
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        for list in ["initContainers", "containers"] {
            let Some((li, Node::Seq { items, .. })) = entry(node, list) else {
                continue;
            };
            for (ci, c) in items.iter().enumerate() {
                let Some((ii, image)) = entry(c, "image") else {
                    continue;
                };
                let current = image.as_str().unwrap_or_default();
                let (repo, old) = split_image(current);
                let matches = match container {
                    Some(name) => c.get("name").and_then(Node::as_str) == Some(name),
                    None => {
                        Reference::parse(repo).is_ok_and(|r| r.repository() == desired.repository)
                    }
                };
                if !matches {
                    continue;
                }
                let mut path = steps.clone();
                path.extend([Step::Value(li), Step::Item(ci), Step::Value(ii)]);
                let name = c.get("name").and_then(Node::as_str).unwrap_or("?");
                patch.set_scalar(
                    image,
                    NodePath {
                        document,
                        steps: path,
                    },
                    &format!("{repo}{}", desired.suffix()),
                    &format!("{kind} container {name} image"),
                )?;
                olds.push(old);
            }
        }
    }
    if olds.is_empty() {
        return Err(error(match container {
            Some(name) => format!("no workload container named {name}"),
            None => format!("no workload container runs {}", desired.repository),
        }));
    }
    olds.dedup();
    Ok(olds.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_values_split_into_repository_and_the_rest() {
        assert_eq!(
            split_image("ghcr.io/org/api:v1.4.0"),
            ("ghcr.io/org/api", "v1.4.0".into())
        );
        assert_eq!(
            split_image("localhost:5000/app"),
            ("localhost:5000/app", "(none)".into())
        );
        assert_eq!(
            split_image("nginx:1.27@sha256:ab"),
            ("nginx", "1.27@sha256:ab".into())
        );
        assert_eq!(split_image("app@sha256:ab"), ("app", "sha256:ab".into()));
    }
}
