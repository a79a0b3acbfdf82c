//! The `image:` of containers in plain Kubernetes manifests.
//!
//! Pod templates are found where workloads keep them: `spec` of a Pod, `spec.jobTemplate...`
//! of a CronJob, and `spec.template.spec` of everything else (Deployments, StatefulSets, Jobs,
//! Argo Rollouts, Knative Services, most CRDs that run pods). Init, ephemeral and regular
//! containers all count, in every document and in every item of a `kind: List`. Without a container name, every container running the image (or one
//! it replaces) is updated; with one, every container of that name running it, and when none
//! of that name does, the target is refused naming what they run.

use super::{
    Desired, Kind, Owner, alias_refusal, at_line, entry, node_path, scalar, set_value, split_image,
};
use crate::writeback::yaml::{self, Node, Patch, Step, Yaml, YamlError, error};

/// Where the pod spec sits in a document of this kind.
fn pod_spec_path(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &["spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    }
}

/// The containers running the image, or only the one named.
pub(super) struct Manifest<'a> {
    pub container: Option<&'a str>,
}

impl Kind for Manifest<'_> {
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &Desired,
        patch: &mut Patch,
    ) -> Result<String, YamlError> {
        let container = self.container;
        let mut olds = Vec::new();
        let mut named = 0;
        let mut mismatch = None;
        let mut aliased = Vec::new();
        let mut written = Vec::new();
        // The workloads: each document, and each item of a `kind: List` (what `kubectl get -o
        // yaml` prints, and what `kubectl apply` and kustomize take).
        let mut workloads = Vec::new();
        for (document, doc) in yaml.documents.iter().enumerate() {
            match scalar(source, doc, "kind")? {
                Some(kind) if kind == "List" || kind.ends_with("List") => {
                    if let Some((li, Node::Seq { items, .. })) = entry(source, doc, "items")? {
                        for (i, item) in items.iter().enumerate() {
                            workloads.push((
                                document,
                                doc,
                                item,
                                vec![Step::Value(li), Step::Item(i)],
                            ));
                        }
                    }
                }
                Some(_) => workloads.push((document, doc, doc, Vec::new())),
                None => {}
            }
        }
        for (document, doc, workload, prefix) in workloads {
            let Some(kind) = scalar(source, workload, "kind")? else {
                continue;
            };
            let mut node = workload;
            let mut steps = prefix;
            let mut found = true;
            for key in pod_spec_path(kind) {
                match entry(source, node, key)? {
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
            for list in ["initContainers", "containers", "ephemeralContainers"] {
                let Some((li, Node::Seq { items, .. })) = entry(source, node, list)? else {
                    continue;
                };
                for (ci, c) in items.iter().enumerate() {
                    let Some((ii, image)) = entry(source, c, "image")? else {
                        continue;
                    };
                    let name = scalar(source, c, "name")?.unwrap_or("?");
                    // `image: *go`: the image is the anchored value's. It moves when the anchor
                    // is written (at another container's `image:`); if nothing writes the anchor,
                    // that is said below.
                    if let Node::Alias { anchor, .. } = image {
                        let value = yaml::anchored(doc, *anchor).and_then(Node::as_str);
                        let (repo, _, _) = split_image(value.unwrap_or_default());
                        if desired.owner(repo) != Owner::Other
                            && container.is_none_or(|wanted| wanted == name)
                        {
                            aliased.push((
                                image,
                                doc,
                                *anchor,
                                format!("{kind} container {name} image"),
                            ));
                        }
                        continue;
                    }
                    let current = image.as_str().unwrap_or_default();
                    let (repo, tag, digest) = split_image(current);
                    let owner = desired.owner(repo);
                    match container {
                        Some(wanted) if wanted != name => continue,
                        // Several workloads in one file may have a container of this name; the
                        // ones running another image are left, and reported if none runs ours.
                        Some(_) if owner == Owner::Other => {
                            named += 1;
                            mismatch.get_or_insert_with(|| {
                                at_line(
                                    source,
                                    image.start(),
                                    desired.not_ours(&format!("{kind} container {name}"), current),
                                )
                            });
                            continue;
                        }
                        Some(_) => named += 1,
                        None if owner == Owner::Other => continue,
                        None => {}
                    }
                    let repo = match owner {
                        Owner::Replaced => desired.written.clone(),
                        _ => repo.to_string(),
                    };
                    let mut path = steps.clone();
                    path.extend([Step::Value(li), Step::Item(ci), Step::Value(ii)]);
                    set_value(
                        source,
                        doc,
                        patch,
                        image,
                        node_path(document, &path),
                        &format!("{repo}{}", desired.suffix()),
                        &format!("{kind} container {name} image"),
                    )?;
                    written.push(image.start());
                    olds.push(super::describe_old(tag, digest));
                }
            }
        }
        // An aliased container whose anchor no container of ours holds would keep the old image.
        for (alias, doc, anchor, what) in aliased {
            let moved = yaml::anchored(doc, anchor).is_some_and(|a| written.contains(&a.start()));
            if !moved {
                return Err(alias_refusal(source, doc, alias, &what));
            }
        }
        if olds.is_empty() {
            if let Some(e) = mismatch {
                return Err(e);
            }
            return Err(error(match container {
                Some(name) if named == 0 => format!("no workload container named {name}"),
                Some(name) => format!(
                    "no workload container named {name} runs {}",
                    desired.repository
                ),
                None => format!("no workload container runs {}", desired.repository),
            }));
        }
        olds.dedup();
        Ok(olds.join(", "))
    }
}
