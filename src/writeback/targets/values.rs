//! Values at paths: Helm values files (one document) and any other YAML (every document that
//! has the paths and matches the target's `documents` filter: HelmReleases, Argo Rollouts,
//! CRDs).
//!
//! Charts split an image over several keys. A tag path is read together with the keys beside
//! it that the chart renders into the same reference: `repository` (or `image`, as
//! ingress-nginx names it), `registry`, and `digest` (or `sha`). The registry and repository are
//! read as one reference for the ownership check and left untouched while they name the image;
//! a migration (`replaces`) writes each part to its own key. A digest beside the tag that the
//! target does not manage is refused, since the chart would keep deploying that digest.

use super::{
    Desired, Miss, Owner, at_line, describe_old, is_empty_value, lookup, node_path,
    single_document, split_image,
};
use crate::config::{ImagePaths, Segment, ValuePath};
use crate::writeback::yaml::{Node, Patch, Step, Yaml, YamlError, error};

/// `documents`: `None` for a Helm values file (exactly one document); the filter of a yaml
/// target otherwise.
pub(super) fn edit(
    yaml: &Yaml,
    source: &str,
    paths: &ImagePaths,
    documents: Option<&Vec<(ValuePath, String)>>,
    desired: &Desired,
    patch: &mut Patch,
) -> Result<String, YamlError> {
    let Some(filter) = documents else {
        let root = single_document(yaml, "the values file")?;
        return Ok(edit_document(source, root, 0, paths, desired, patch)?);
    };
    let mut olds = Vec::new();
    for (index, doc) in yaml.documents.iter().enumerate() {
        if !matches_filter(source, doc, filter)? {
            continue;
        }
        match edit_document(source, doc, index, paths, desired, patch) {
            Ok(old) => olds.push(old),
            Err(Miss::Absent(_)) => continue,
            Err(Miss::Bad(e)) => return Err(e),
        }
    }
    if olds.is_empty() {
        let path = match paths {
            ImagePaths::Split { tag, .. } => tag,
            ImagePaths::Combined { image } => image,
        };
        let which = if filter.is_empty() {
            String::new()
        } else {
            " matching the target's documents filter".to_string()
        };
        return Err(error(format!("no document{which} has `{path}`")));
    }
    olds.dedup();
    Ok(olds.join(", "))
}

/// Whether every `path = value` of the filter holds in `doc`.
fn matches_filter(
    source: &str,
    doc: &Node,
    filter: &[(ValuePath, String)],
) -> Result<bool, YamlError> {
    for (path, want) in filter {
        match lookup(source, doc, path) {
            Ok((node, _)) if node.as_str() == Some(want.as_str()) => {}
            Ok(_) | Err(Miss::Absent(_)) => return Ok(false),
            Err(Miss::Bad(e)) => return Err(e),
        }
    }
    Ok(true)
}

/// A value found at a path or beside the tag.
struct Found<'a> {
    node: &'a Node,
    steps: Vec<Step>,
    /// Named in the config (written when needed), or found beside the tag (only read).
    configured: bool,
    path: String,
}

/// The path one key up from `path` with `key` at the end, when `path` ends in a key.
fn sibling(path: &ValuePath, key: &str) -> Option<ValuePath> {
    let (last, parent) = path.0.split_last()?;
    matches!(last, Segment::Key(_)).then(|| {
        let mut p = parent.to_vec();
        p.push(Segment::Key(key.to_string()));
        ValuePath(p)
    })
}

/// The configured path's value (which must exist), or the first of `keys` found beside `near`.
fn find<'a>(
    source: &str,
    root: &'a Node,
    configured: Option<&ValuePath>,
    near: &ValuePath,
    keys: &[&str],
) -> Result<Option<Found<'a>>, Miss> {
    if let Some(path) = configured {
        let (node, steps) = lookup(source, root, path)?;
        return Ok(Some(Found {
            node,
            steps,
            configured: true,
            path: path.to_string(),
        }));
    }
    for key in keys {
        let Some(path) = sibling(near, key) else {
            continue;
        };
        match lookup(source, root, &path) {
            Ok((node, steps)) if node.as_str().is_some() => {
                return Ok(Some(Found {
                    node,
                    steps,
                    configured: false,
                    path: path.to_string(),
                }));
            }
            Ok(_) | Err(Miss::Absent(_)) => {}
            Err(bad) => return Err(bad),
        }
    }
    Ok(None)
}

fn edit_document(
    source: &str,
    root: &Node,
    document: usize,
    paths: &ImagePaths,
    desired: &Desired,
    patch: &mut Patch,
) -> Result<String, Miss> {
    let bad = |e: YamlError| Miss::Bad(e);
    match paths {
        ImagePaths::Combined { image } => {
            let (node, steps) = lookup(source, root, image)?;
            let current = node.as_str().unwrap_or_default();
            let (repo, tag, digest) = split_image(current);
            let repo = match desired.owner(repo) {
                Owner::Ours => repo.to_string(),
                Owner::Replaced => desired.written.clone(),
                Owner::Other => {
                    return Err(bad(at_line(
                        source,
                        node.start(),
                        desired.not_ours(&format!("`{image}`"), current),
                    )));
                }
            };
            patch
                .set_scalar(
                    node,
                    node_path(document, &steps),
                    &format!("{repo}{}", desired.suffix()),
                    &image.to_string(),
                )
                .map_err(bad)?;
            Ok(describe_old(tag, digest))
        }
        ImagePaths::Split {
            tag,
            repository,
            registry,
            digest,
        } => {
            let (tag_node, tag_steps) = lookup(source, root, tag)?;
            let repo = find(
                source,
                root,
                repository.as_ref(),
                tag,
                &["repository", "image"],
            )?;
            let near = repository.as_ref().unwrap_or(tag);
            let registry = find(source, root, registry.as_ref(), near, &["registry"])?;
            let digest_at = find(source, root, digest.as_ref(), tag, &["digest", "sha"])?;
            if let Some(repo) = &repo {
                check_owner(source, repo, registry.as_ref(), document, desired, patch)?;
            }
            let managed_digest = digest_at.as_ref().filter(|d| d.configured);
            if let Some(d) = &digest_at
                && !d.configured
                && d.node.as_str().is_some_and(|v| !is_empty_value(v))
            {
                return Err(bad(at_line(
                    source,
                    d.node.start(),
                    format!(
                        "`{}` holds {}, which the chart deploys instead of the tag: add digest = \"{}\" to the target so image-updater keeps it current (or clears it), or empty it",
                        d.path,
                        d.node.as_str().unwrap_or_default(),
                        d.path
                    ),
                )));
            }
            let old_digest = managed_digest.and_then(|d| d.node.as_str());
            let old = describe_old(tag_node.as_str(), old_digest);
            let tag_value = match managed_digest {
                Some(_) => desired.tag.clone().unwrap_or_default(),
                None => desired.describe(),
            };
            patch
                .set_scalar(
                    tag_node,
                    node_path(document, &tag_steps),
                    &tag_value,
                    &tag.to_string(),
                )
                .map_err(bad)?;
            if let Some(d) = managed_digest {
                let value = desired.digest.clone().unwrap_or_default();
                patch
                    .set_scalar(d.node, node_path(document, &d.steps), &value, &d.path)
                    .map_err(bad)?;
            }
            Ok(old)
        }
    }
}

/// Checks that the repository (with the registry beside it, as the chart joins them) names the
/// image, and moves it to the new name when the image replaces it.
fn check_owner(
    source: &str,
    repo: &Found,
    registry: Option<&Found>,
    document: usize,
    desired: &Desired,
    patch: &mut Patch,
) -> Result<(), Miss> {
    let bad = |e: YamlError| Miss::Bad(e);
    let repo_value = repo.node.as_str().unwrap_or_default();
    let registry_value = registry
        .and_then(|r| r.node.as_str())
        .filter(|r| !is_empty_value(r));
    let rendered = match registry_value {
        Some(host) => format!("{}/{repo_value}", host.trim_end_matches('/')),
        None => repo_value.to_string(),
    };
    if let Some(host) = registry_value
        && repo_value.starts_with(&format!("{}/", host.trim_end_matches('/')))
    {
        return Err(bad(at_line(
            source,
            repo.node.start(),
            format!(
                "`{}` is {repo_value}, which already starts with the registry {host} that `{}` adds: the chart renders {rendered}; write {} there",
                repo.path,
                registry.map(|r| r.path.as_str()).unwrap_or("registry"),
                &repo_value[host.trim_end_matches('/').len() + 1..]
            ),
        )));
    }
    // A repository value may carry a tag of its own (`repository: nginx:1.27`); the chart
    // appends the tag key's value after it, which never renders a valid reference.
    let (name, tag, digest) = split_image(&rendered);
    if tag.is_some() || digest.is_some() {
        return Err(bad(at_line(
            source,
            repo.node.start(),
            format!(
                "`{}` is {repo_value}, with a tag or digest of its own: the chart would render an invalid reference; write the bare repository there",
                repo.path
            ),
        )));
    }
    match desired.owner(name) {
        Owner::Ours => Ok(()),
        Owner::Other => {
            let mut e = desired.not_ours(&format!("`{}`", repo.path), &rendered);
            // `ingress-nginx/controller` reads as a Docker Hub name; charts like ingress-nginx
            // prepend a registry kept at another key.
            if registry.is_none()
                && !rendered.starts_with("docker.io/")
                && !rendered
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .contains(['.', ':'])
            {
                e.message.push_str(
                    "; if the chart takes the registry from another key, set registry = \"PATH\" to it",
                );
            }
            Err(bad(at_line(source, repo.node.start(), e)))
        }
        Owner::Replaced => {
            let unmanaged = [Some(repo), registry.filter(|_| registry_value.is_some())]
                .into_iter()
                .flatten()
                .find(|f| !f.configured);
            if let Some(f) = unmanaged {
                return Err(bad(at_line(
                    source,
                    f.node.start(),
                    format!(
                        "`{}` names {rendered}, which this image replaces: add {} = \"{}\" to the target so image-updater can move it to {}",
                        f.path,
                        if std::ptr::eq(f, repo) {
                            "repository"
                        } else {
                            "registry"
                        },
                        f.path,
                        desired.written
                    ),
                )));
            }
            let (host, path) = desired.registry_and_path();
            match registry.filter(|_| registry_value.is_some()) {
                Some(reg) => {
                    patch
                        .set_scalar(reg.node, node_path(document, &reg.steps), host, &reg.path)
                        .map_err(bad)?;
                    patch
                        .set_scalar(
                            repo.node,
                            node_path(document, &repo.steps),
                            path,
                            &repo.path,
                        )
                        .map_err(bad)?;
                }
                None => patch
                    .set_scalar(
                        repo.node,
                        node_path(document, &repo.steps),
                        &desired.written,
                        &repo.path,
                    )
                    .map_err(bad)?,
            }
            Ok(())
        }
    }
}
