//! Values at paths: Helm values files (one document) and any other YAML (every document that
//! has the paths and matches the target's `documents` filter: HelmReleases, Argo Rollouts,
//! CRDs). As with manifests, a document whose value at the path names another image is left
//! alone; the target is refused only when no document names the image.
//!
//! Charts split an image over several keys. A tag path is read together with the keys beside
//! it that the chart renders into the same reference: `repository` (or `image`, as
//! ingress-nginx names it), `registry`, and `digest` (or `sha`). The registry and repository are
//! read as one reference for the ownership check and left untouched while they name the image;
//! a migration (`replaces`) writes each part to its own key. A digest beside the tag that the
//! target does not manage is refused, since the chart would keep deploying that digest.

use super::{
    Desired, Kind, Miss, Owner, at_line, describe_old, is_empty_value, lookup, node_path,
    set_value, single_document, split_image,
};
use crate::config::{ImagePaths, Segment, ValuePath};
use crate::writeback::yaml::{Node, Patch, Step, Yaml, YamlError, error};

/// Values paths: in a Helm values file (one document, `documents` is `None`), or in every
/// document of any YAML that matches `documents`.
pub(super) struct Values<'a> {
    pub paths: &'a ImagePaths,
    pub documents: Option<&'a Vec<(ValuePath, String)>>,
}

impl Kind for Values<'_> {
    fn edit(
        &self,
        yaml: &Yaml,
        source: &str,
        desired: &Desired,
        patch: &mut Patch,
    ) -> Result<String, YamlError> {
        let (paths, documents) = (self.paths, self.documents);
        let Some(filter) = documents else {
            let root = single_document(yaml, "the values file")?;
            return Ok(edit_document(source, root, 0, paths, desired, patch)?);
        };
        let mut olds = Vec::new();
        let mut other = None;
        for (index, doc) in yaml.documents.iter().enumerate() {
            if !matches_filter(source, doc, filter)? {
                continue;
            }
            // Each document is planned on a copy: a document of another image is skipped, and
            // whatever was planned for it before that was found is dropped with it.
            let mut this = patch.clone();
            match edit_document(source, doc, index, paths, desired, &mut this) {
                Ok(old) => {
                    *patch = this;
                    olds.push(old);
                }
                Err(Miss::Absent(_)) => continue,
                Err(Miss::Other(e)) => {
                    other.get_or_insert(e);
                }
                Err(Miss::Bad(e)) => return Err(e),
            }
        }
        if let (true, Some(e)) = (olds.is_empty(), other) {
            return Err(e);
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
            Err(Miss::Bad(e) | Miss::Other(e)) => return Err(e),
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
        // A path the config names is never skipped: without it the chart renders a default
        // the file does not show. (A managed digest is added by `lookup`'s own advice.)
        let (node, steps) = match lookup(source, root, path) {
            Err(Miss::Absent(_)) if keys[0] != "digest" => {
                return Err(Miss::Absent(error(format!(
                    "`{path}`, which the target names as the image's {role}, is not in the file: nothing written, since the chart would render its own default {role} there. Add `{path}` with the image's {role}, or drop `{role}` from the target",
                    role = keys[0]
                ))));
            }
            other => other?,
        };
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
            // An empty or null value beside the tag (`repository:`, `repository: null`, as
            // traefik's and loki's values have) is not an image: the chart falls back to its
            // own default there, which the values file does not say.
            Ok((node, steps)) if node.as_str().is_some_and(|v| !is_empty_value(v)) => {
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
                    return Err(Miss::Other(at_line(
                        source,
                        node.start(),
                        desired.not_ours(&format!("`{image}`"), current),
                    )));
                }
            };
            set_value(
                source,
                root,
                patch,
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
            let mut repo = find(
                source,
                root,
                repository.as_ref(),
                tag,
                &["repository", "image"],
            )?;
            let near = repository.as_ref().unwrap_or(tag);
            let registry = find(source, root, registry.as_ref(), near, &["registry"])?;
            // The key the config names as the registry is never also read as the repository
            // (`registry = "images.repository"` for a chart that completes a prefix).
            if let (Some(r), Some(g)) = (&repo, &registry)
                && !r.configured
                && r.path == g.path
            {
                repo = None;
            }
            let digest_at = find(source, root, digest.as_ref(), tag, &["digest", "sha"])?;
            let repo = repo.filter(|r| r.node.as_str().is_some_and(|v| !is_empty_value(v)));
            match &repo {
                Some(repo) => check_owner(
                    source,
                    root,
                    repo,
                    registry.as_ref(),
                    document,
                    desired,
                    patch,
                )?,
                None => check_prefix(source, registry.as_ref(), desired)?,
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
            set_value(
                source,
                root,
                patch,
                tag_node,
                node_path(document, &tag_steps),
                &tag_value,
                &tag.to_string(),
            )
            .map_err(bad)?;
            if let Some(d) = managed_digest {
                let value = desired.digest.clone().unwrap_or_default();
                set_value(
                    source,
                    root,
                    patch,
                    d.node,
                    node_path(document, &d.steps),
                    &value,
                    &d.path,
                )
                .map_err(bad)?;
            }
            Ok(old)
        }
    }
}

/// With a registry but no repository in the values, the chart completes the name itself
/// (`{{ .Values.global.hub }}/proxyv2`): what it renders is the registry, a `/`, and a name of
/// its own. That names the image only when the image's name starts with the registry.
fn check_prefix(source: &str, registry: Option<&Found>, desired: &Desired) -> Result<(), Miss> {
    let Some(registry) = registry else {
        return Ok(());
    };
    let value = registry.node.as_str().unwrap_or_default();
    if is_empty_value(value) {
        return Ok(());
    }
    let prefix = value.trim_end_matches('/');
    if desired.under(prefix) {
        return Ok(());
    }
    let name = desired
        .repository
        .rsplit('/')
        .next()
        .unwrap_or(&desired.repository);
    Err(Miss::Other(at_line(
        source,
        registry.node.start(),
        format!(
            "`{}` is {prefix}, under which the chart renders its own name for the image ({prefix}/…), not {}: nothing written. If that registry serves the image, name it there (image = \"{prefix}/{name}\"); otherwise point `registry` at the key that holds the image's registry",
            registry.path, desired.repository
        ),
    )))
}

/// Bitnami's charts refuse to render an image whose registry or repository differs from the
/// chart's own unless `global.security.allowInsecureImages` is true (the render fails with
/// "Original containers have been substituted for unrecognized ones"). A migration written
/// into such a values file would break the deployment, so it is refused until the file says
/// so.
fn insecure_images_allowed(source: &str, root: &Node) -> Result<(), Miss> {
    let path: ValuePath = "global.security.allowInsecureImages"
        .parse()
        .expect("a valid path");
    match lookup(source, root, &path) {
        Ok((node, _)) if node.as_str() != Some("true") => Err(Miss::Bad(at_line(
            source,
            node.start(),
            "`global.security.allowInsecureImages` is not true, and this chart renders no image whose registry or repository it does not know: nothing written. Set it to true (the chart's own rule for a mirror or a rebuilt image), then the migration is written",
        ))),
        Ok(_) | Err(Miss::Absent(_)) => Ok(()),
        Err(other) => Err(other),
    }
}

/// Checks that the repository (with the registry beside it, as the chart joins them) names the
/// image, and moves it to the new name when the image replaces it.
fn check_owner(
    source: &str,
    root: &Node,
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
        Owner::Other if registry.is_none() && desired.under(&rendered) => {
            // `images.repository: us-docker.pkg.dev/org/demo` where the chart renders
            // `{repository}/{service}:{tag}`: a prefix, not this image's repository, and the tag
            // beside it is every service's. Moving the prefix to the image's name (what a
            // `replaces` hint would do) breaks every service; no key here is this image's own.
            Err(Miss::Other(at_line(
                source,
                repo.node.start(),
                format!(
                    "`{}` is {rendered}, a prefix of {} rather than its repository: the chart completes it with a name of its own for each image it runs, and the tag beside it is theirs too, so writing it would change all of them: nothing written. Point the target at a tag only this image renders",
                    repo.path, desired.repository
                ),
            )))
        }
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
            Err(Miss::Other(at_line(source, repo.node.start(), e)))
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
            insecure_images_allowed(source, root)?;
            let (host, path) = desired.registry_and_path();
            match registry.filter(|_| registry_value.is_some()) {
                Some(reg) => {
                    set_value(
                        source,
                        root,
                        patch,
                        reg.node,
                        node_path(document, &reg.steps),
                        host,
                        &reg.path,
                    )
                    .map_err(bad)?;
                    set_value(
                        source,
                        root,
                        patch,
                        repo.node,
                        node_path(document, &repo.steps),
                        path,
                        &repo.path,
                    )
                    .map_err(bad)?;
                }
                None => set_value(
                    source,
                    root,
                    patch,
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
