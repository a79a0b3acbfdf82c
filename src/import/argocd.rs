//! Argo CD Image Updater as an `updater.toml`, from its documentation:
//!
//! - v0.x: the `argocd-image-updater.argoproj.io/*` annotations of an `Application`
//!   (`image-list` with its aliases and constraints, `<alias>.update-strategy`,
//!   `.allow-tags`, `.ignore-tags`, `.platforms`, `.pull-secret`, `.helm.image-name`,
//!   `.helm.image-tag`, `.helm.image-spec`, `.kustomize.image-name`, `write-back-method`,
//!   `git-repository`, `git-branch` with its `base:target` form, `write-back-target`);
//! - v1.x: the `ImageUpdater` resource (`writeBackConfig`, `applicationRefs[]` with their
//!   `images[]`, `commonUpdateSettings` and `manifestTargets`);
//! - the `registries.conf` of its ConfigMap (`registries:` with `prefix`, `api_url`,
//!   `credentials`, `default`, `insecure`, `limit`, `credsexpire`).
//!
//! Each Application (or application reference) is an environment, on the branch it writes
//! to; each of its images is an image deployed there. Image Updater's `argocd` write-back
//! (parameter overrides in the cluster) and its default git target (a
//! `.argocd-source-APP.yaml` only Argo CD reads) have no equivalent in files people read:
//! an image without a target is written commented out, saying so.

use std::collections::BTreeMap;

use super::{ImportError, Imported, Object, Writer, alias, items, quoted};
use crate::writeback::yaml::Node;

const PREFIX: &str = "argocd-image-updater.argoproj.io/";

/// What one application asks, however it was written (annotations or an `ImageUpdater`).
#[derive(Debug, Clone, Default)]
struct App {
    /// Where it was read, for messages: `Application argocd/production-app`.
    what: String,
    name: String,
    method: Option<String>,
    repository: Option<String>,
    branch: Option<String>,
    target: Option<String>,
    /// The source's `repoURL`, Image Updater's default repository.
    source_url: Option<String>,
    /// The source's `path`, which relative write-back targets start from.
    source_path: Option<String>,
    images: Vec<Image>,
}

#[derive(Debug, Clone, Default)]
struct Image {
    alias: String,
    /// The image as written, without the constraint.
    name: String,
    /// What followed the image's `:` in `image-list` (a constraint, or the tag `digest`
    /// follows).
    constraint: Option<String>,
    strategy: Option<String>,
    allow: Option<String>,
    ignore: Vec<String>,
    platforms: Vec<String>,
    pull_secret: Option<String>,
    helm_name: Option<String>,
    helm_tag: Option<String>,
    helm_spec: Option<String>,
    kustomize_name: Option<String>,
    /// `force-update`: Image Updater updated the image even where the application did not
    /// run it yet.
    force_update: bool,
}

/// Translates Image Updater's configuration among `objects` (the registries.conf is read
/// from any document of `yamls`, a ConfigMap's or the file itself).
pub fn import(
    objects: &[Object],
    yamls: &[crate::writeback::yaml::Yaml],
    options: &super::Options,
) -> Result<Imported, ImportError> {
    let mut apps: Vec<App> = objects
        .iter()
        .filter(|o| o.kind == "Application")
        .filter_map(annotated)
        .collect();
    let resources = objects.iter().filter(|o| o.kind == "ImageUpdater").count();
    for o in objects.iter().filter(|o| o.kind == "ImageUpdater") {
        apps.extend(image_updater(o));
    }
    let mut w = Writer::default();
    w.line("# Imported from Argo CD Image Updater by `image-updater import`.");
    w.line("# Each `# import:` comment marks what could not be translated exactly, and why.");
    w.line("");
    let registries = registries(&mut w, yamls);
    if apps.is_empty() && registries == 0 {
        return Err(ImportError::Nothing);
    }
    let envs = environments(&mut w, &apps, options);
    // An alias used by several applications is named by its application too.
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for app in &apps {
        for i in &app.images {
            *uses.entry(i.alias.as_str()).or_default() += 1;
        }
    }
    for (app, env) in apps.iter().zip(&envs) {
        for image in &app.images {
            let name = if uses[image.alias.as_str()] > 1 {
                alias(&format!("{}-{}", app.name, image.alias))
            } else {
                alias(&image.alias)
            };
            write_image(&mut w, app, env, image, &name);
        }
    }
    Ok(Imported {
        toml: w.text,
        notes: w.notes,
        read: vec![
            (
                "Application",
                objects.iter().filter(|o| o.kind == "Application").count(),
            ),
            ("ImageUpdater", resources),
            ("registry", registries),
        ],
    })
}

/// The annotations of an `Application`, when it has an image list.
fn annotated(o: &Object) -> Option<App> {
    let annotations = super::at(o.node, &["metadata", "annotations"])?;
    let get = |key: &str| {
        annotations
            .get(&format!("{PREFIX}{key}"))
            .and_then(Node::as_str)
            .map(str::to_string)
    };
    let list = get("image-list")?;
    let default_strategy = get("update-strategy");
    let images = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (alias, image) = match entry.split_once('=') {
                Some((a, i)) => (a.trim().to_string(), i.trim()),
                None => (short_name(entry), entry),
            };
            let (name, constraint) = split_constraint(image);
            let of = |key: &str| get(&format!("{alias}.{key}"));
            Image {
                strategy: of("update-strategy").or_else(|| default_strategy.clone()),
                allow: of("allow-tags"),
                ignore: of("ignore-tags").map(|l| list_of(&l)).unwrap_or_default(),
                platforms: of("platforms").map(|l| list_of(&l)).unwrap_or_default(),
                pull_secret: of("pull-secret"),
                helm_name: of("helm.image-name"),
                helm_tag: of("helm.image-tag"),
                helm_spec: of("helm.image-spec"),
                kustomize_name: of("kustomize.image-name"),
                force_update: of("force-update").is_some_and(|f| f == "true"),
                alias,
                name,
                constraint,
            }
        })
        .collect();
    Some(App {
        what: o.id(),
        name: o.name.clone(),
        method: get("write-back-method"),
        repository: get("git-repository"),
        branch: get("git-branch"),
        target: get("write-back-target"),
        source_url: o.str_at(&["spec", "source", "repoURL"]),
        source_path: o.str_at(&["spec", "source", "path"]),
        images,
    })
}

/// An `ImageUpdater` resource: one application per `applicationRefs` entry, its write-back
/// settings over the resource's.
fn image_updater(o: &Object) -> Vec<App> {
    let git = |node: Option<&Node>, key: &str| {
        node.and_then(|n| super::at(n, &["writeBackConfig", "gitConfig", key]))
            .and_then(Node::as_str)
            .map(str::to_string)
    };
    let method = |node: Option<&Node>| {
        node.and_then(|n| super::at(n, &["writeBackConfig", "method"]))
            .and_then(Node::as_str)
            .map(str::to_string)
    };
    let spec = o.node.get("spec");
    let common = spec.and_then(|s| s.get("commonUpdateSettings"));
    items(spec.and_then(|s| s.get("applicationRefs")))
        .iter()
        .map(|r| {
            let reference = Some(r);
            let pattern = r
                .get("namePattern")
                .and_then(Node::as_str)
                .unwrap_or("application")
                .to_string();
            let ref_common = r.get("commonUpdateSettings");
            let images = items(r.get("images"))
                .iter()
                .map(|i| {
                    let s = |path: &[&str]| {
                        super::at(i, path)
                            .and_then(Node::as_str)
                            .map(str::to_string)
                    };
                    let setting = |key: &str| {
                        s(&["commonUpdateSettings", key])
                            .or_else(|| {
                                ref_common
                                    .and_then(|c| c.get(key))
                                    .and_then(Node::as_str)
                                    .map(str::to_string)
                            })
                            .or_else(|| {
                                common
                                    .and_then(|c| c.get(key))
                                    .and_then(Node::as_str)
                                    .map(str::to_string)
                            })
                    };
                    let list = |key: &str| -> Vec<String> {
                        let node = super::at(i, &["commonUpdateSettings", key]);
                        match node {
                            Some(Node::Seq { .. }) => items(node)
                                .iter()
                                .filter_map(|n| n.as_str().map(str::to_string))
                                .collect(),
                            Some(n) => n.as_str().map(list_of).unwrap_or_default(),
                            None => Vec::new(),
                        }
                    };
                    let image = s(&["imageName"]).unwrap_or_default();
                    let (name, constraint) = split_constraint(&image);
                    Image {
                        alias: s(&["alias"]).unwrap_or_else(|| short_name(&name)),
                        strategy: setting("updateStrategy"),
                        allow: setting("allowTags"),
                        ignore: list("ignoreTags"),
                        platforms: list("platforms"),
                        pull_secret: setting("pullSecret"),
                        helm_name: s(&["manifestTargets", "helm", "name"]),
                        helm_tag: s(&["manifestTargets", "helm", "tag"]),
                        helm_spec: s(&["manifestTargets", "helm", "spec"]),
                        kustomize_name: s(&["manifestTargets", "kustomize", "name"]),
                        force_update: setting("forceUpdate").is_some_and(|f| f == "true"),
                        name,
                        constraint,
                    }
                })
                .collect();
            App {
                what: format!("{} (applicationRefs {pattern})", o.id()),
                name: pattern,
                method: method(reference).or_else(|| method(spec)),
                repository: git(reference, "repository").or_else(|| git(spec, "repository")),
                branch: git(reference, "branch").or_else(|| git(spec, "branch")),
                target: git(reference, "writeBackTarget").or_else(|| git(spec, "writeBackTarget")),
                source_url: None,
                source_path: None,
                images,
            }
        })
        .collect()
}

/// The registries of every `registries.conf` among the inputs (in a ConfigMap's `data`, or
/// the file itself), as `[registries.NAME]`; how many.
fn registries(w: &mut Writer, yamls: &[crate::writeback::yaml::Yaml]) -> usize {
    let mut prefixes: Vec<(String, String)> = Vec::new();
    let mut n = 0;
    for doc in yamls.iter().flat_map(|y| &y.documents) {
        let text = super::at(doc, &["data", "registries.conf"]).and_then(Node::as_str);
        let parsed;
        let list = match text {
            Some(text) => match crate::writeback::yaml::Yaml::parse(text) {
                Ok(yaml) => {
                    parsed = yaml;
                    parsed.documents.first().and_then(|d| d.get("registries"))
                }
                Err(_) => {
                    w.inexact("registries.conf", "it is not YAML; no registry was read");
                    continue;
                }
            },
            None => doc.get("registries"),
        };
        for r in items(list) {
            n += 1;
            registry(w, r, &mut prefixes);
        }
    }
    n
}

/// One `registries.conf` entry.
fn registry(w: &mut Writer, r: &Node, prefixes: &mut Vec<(String, String)>) {
    let s = |key: &str| r.get(key).and_then(Node::as_str).map(str::to_string);
    let yes = |key: &str| matches!(s(key).as_deref(), Some("true" | "yes"));
    let mut name = alias(
        &s("name")
            .unwrap_or_else(|| "registry".into())
            .to_lowercase(),
    );
    if prefixes.iter().any(|(n, _)| *n == name) {
        name = format!("{name}-{}", prefixes.len() + 1);
    }
    let what = format!(
        "registries.conf registry `{}`",
        s("name").unwrap_or_default()
    );
    let url = s("api_url");
    // Without a prefix, Image Updater matches Docker Hub's images by its api_url.
    let prefix = s("prefix").or_else(|| {
        url.as_deref()
            .filter(|u| u.contains("registry-1.docker.io") || u.contains("index.docker.io"))
            .map(|_| "docker.io".to_string())
    });
    let Some(prefix) = prefix else {
        w.inexact(
            &what,
            "it has no prefix, so no image is read through it; it is left out",
        );
        w.line("");
        return;
    };
    if let Some((first, _)) = prefixes.iter().find(|(_, p)| *p == prefix) {
        w.inexact(
            &what,
            &format!("its prefix {prefix} is [registries.{first}]'s already, which Image Updater would have used for those images; it is left out"),
        );
        w.line("");
        return;
    }
    prefixes.push((name.clone(), prefix.clone()));
    w.line(format!("[registries.{name}]"));
    w.string("prefix", &prefix);
    if let Some(url) = &url {
        w.string("api_url", url);
    }
    if yes("insecure") {
        w.line("insecure = true");
    }
    if yes("default") {
        w.line("default = true");
    }
    if let Some(limit) = s("limit").and_then(|l| l.parse::<u32>().ok()) {
        w.line(format!("rate_limit = {limit}"));
    }
    if let Some(expire) = s("credsexpire") {
        w.string("credentials_ttl", &expire);
    }
    if let Some(credentials) = s("credentials") {
        credential(w, &what, &credentials);
    }
    if let Some(ns) = s("defaultns") {
        w.inexact(
            &what,
            &format!("defaultns `{ns}` has no equivalent: write images with their namespace"),
        );
    }
    w.line("");
}

/// A pull secret in Image Updater's form, as a credential reference where one exists.
fn credential(w: &mut Writer, what: &str, secret: &str) {
    if let Some(var) = secret.strip_prefix("env:") {
        w.string("credentials", &format!("env:{var}"));
    } else if let Some(script) = secret.strip_prefix("ext:") {
        w.inexact(
            what,
            &format!(
                "the script `{script}` printed the credentials; image-updater runs a credential helper the Docker way (credentials = \"exec:PROGRAM\"), which prints JSON: wrap the script, then set it"
            ),
        );
    } else {
        w.inexact(
            what,
            &format!(
                "its credentials are in the Kubernetes secret `{secret}`, which image-updater cannot read: put them in a file or the environment and set credentials = \"file:PATH\" or \"env:NAME\""
            ),
        );
    }
}

/// One environment per application, on the branch it writes to; the repositories they write
/// to. Returns the environments' names, in the applications' order.
fn environments(w: &mut Writer, apps: &[App], options: &super::Options) -> Vec<String> {
    let mut repos: Vec<(String, String)> = Vec::new();
    let mut names = Vec::new();
    for app in apps {
        let url = app
            .repository
            .clone()
            .or_else(|| app.source_url.clone())
            .or_else(|| options.repository_url.clone());
        let repo = match &url {
            Some(url) => match repos.iter().find(|(_, u)| u == url) {
                Some((name, _)) => name.clone(),
                None => {
                    let name = if repos.is_empty() {
                        "manifests".to_string()
                    } else {
                        format!("manifests-{}", repos.len() + 1)
                    };
                    w.line(format!("[repositories.{name}]"));
                    w.string("url", url);
                    w.line("");
                    repos.push((name.clone(), url.clone()));
                    name
                }
            },
            None => {
                let name = alias(&format!("{}-repository", app.name));
                w.line(format!("[repositories.{name}]"));
                w.inexact(
                    &app.what,
                    "it names no git repository (nor a source repoURL): the url below is a placeholder (or pass --repository-url)",
                );
                w.string("url", "https://git.example.invalid/CHANGE-ME.git");
                w.line("");
                repos.push((name.clone(), String::new()));
                name
            }
        };
        let env = alias(&app.name);
        w.line(format!("[environments.{env}]"));
        w.string("repository", &repo);
        match app.branch.as_deref().map(|b| b.split_once(':')) {
            Some(Some((base, target))) => {
                // `base:target`: checked out from base, pushed to target. A template in
                // target (`image-updater-{{.AppName}}`) is rendered for this application.
                let target = target
                    .replace("{{.AppName}}", &app.name)
                    .replace("{{ .AppName }}", &app.name);
                if target.contains("{{") {
                    w.inexact(
                        &app.what,
                        &format!("the branch `{target}` is a template with more than the application's name; a fixed branch is written"),
                    );
                }
                w.string("branch", &target.replace(['{', '}', '.', ' '], ""));
                w.string("base_branch", base);
            }
            Some(None) => w.string("branch", app.branch.as_deref().unwrap_or("main")),
            None => {
                w.inexact(
                    &app.what,
                    "no git-branch: Image Updater writes to the source's targetRevision; `main` is written, change it if that is another",
                );
                w.string("branch", "main");
            }
        }
        if app
            .method
            .as_deref()
            .is_some_and(|m| m.starts_with("argocd"))
            || app.method.is_none()
        {
            w.inexact(
                &app.what,
                "its write-back method is `argocd` (the default): Image Updater changed the Application in the cluster, which has no git equivalent; image-updater commits to the branch above",
            );
        } else if let Some(m) = app.method.as_deref().and_then(|m| m.strip_prefix("git:")) {
            w.inexact(
                &app.what,
                &format!("write-back-method `git:{m}` names its git credentials; give the repository `credentials` (or `ssh_key`) instead"),
            );
        }
        w.line("");
        names.push(env);
    }
    names
}

fn write_image(w: &mut Writer, app: &App, env: &str, image: &Image, name: &str) {
    let what = format!("{} image {}", app.what, image.alias);
    let mut s = Writer::default();
    s.line(format!("[images.{name}]"));
    s.string("image", &image.name);
    s.line(format!("environments = [{}]", quoted(env)));
    let strategy = match image.strategy.as_deref() {
        None | Some("semver") => "semver",
        Some("latest" | "newest-build") => "newest-build",
        Some("name" | "alphabetical") => "alphabetical",
        Some("digest") => "digest",
        Some(other) => {
            s.inexact(
                &what,
                &format!("update strategy `{other}` is unknown; semver (the default) is used"),
            );
            "semver"
        }
    };
    if strategy != "semver" {
        s.string("strategy", strategy);
    }
    match (strategy, &image.constraint) {
        ("semver", Some(c)) => s.string("constraint", c),
        ("digest", Some(tag)) => s.string("tag", tag),
        ("digest", None) => {
            s.inexact(
                &what,
                "the digest strategy follows a tag, and none is named: `latest` is written",
            );
            s.string("tag", "latest");
        }
        (_, Some(c)) => s.inexact(
            &what,
            &format!(
                "`:{c}` after the image means nothing to the {strategy} strategy; it is left out"
            ),
        ),
        _ => {}
    }
    match image.allow.as_deref() {
        None | Some("any") => {}
        Some(allow) => match allow.strip_prefix("regexp:") {
            Some(re) if regex::Regex::new(re).is_err() => s.inexact(
                &what,
                &format!("allow-tags `{allow}` does not compile as a Rust regex (RE2's dialect differs here); it is left out"),
            ),
            Some(_) => s.line(format!("allow_tags = [{}]", quoted(allow))),
            None => s.inexact(
                &what,
                &format!("allow-tags `{allow}` is neither `regexp:` nor `any`; it is left out"),
            ),
        },
    }
    if !image.ignore.is_empty() {
        let list: Vec<String> = image.ignore.iter().map(|g| quoted(g)).collect();
        s.line(format!("ignore_tags = [{}]", list.join(", ")));
    }
    if !image.platforms.is_empty() {
        let list: Vec<String> = image.platforms.iter().map(|p| quoted(p)).collect();
        s.line(format!("platforms = [{}]", list.join(", ")));
    }
    if let Some(secret) = &image.pull_secret {
        s.inexact(
            &what,
            &format!(
                "its pull secret `{secret}` belongs to its registry in image-updater: set the registry's credentials (a Kubernetes secret cannot be read; env: can)"
            ),
        );
    }
    if image.force_update {
        s.inexact(
            &what,
            "force-update has no equivalent: a target is written only where its file names the image (or one it replaces)",
        );
    }
    let targets = targets(&mut s, app, image, &what);
    let commented = targets.is_empty();
    for t in targets {
        s.line(format!("[[images.{name}.targets]]"));
        for line in t {
            s.line(line);
        }
    }
    w.append(s, commented);
}

/// The targets `write-back-target` and the image's Helm and kustomize names make, each as its
/// lines; none (said) where Image Updater wrote what only Argo CD reads.
fn targets(w: &mut Writer, app: &App, image: &Image, what: &str) -> Vec<Vec<String>> {
    match app.target.as_deref() {
        Some(t) if t.starts_with("helmvalues:") || t == "helmvalues" => {
            let path = t.strip_prefix("helmvalues:").unwrap_or("values.yaml");
            let file = resolve(w, app, path, what);
            let mut lines = vec![
                format!("kind = {}", quoted("helm")),
                format!("file = {}", quoted(&file)),
            ];
            match (&image.helm_spec, &image.helm_name, &image.helm_tag) {
                (Some(spec), _, _) => lines.push(format!("image = {}", quoted(spec))),
                (None, name, tag) => {
                    if name.is_none() && tag.is_none() {
                        w.inexact(
                            what,
                            "no helm.image-name or image-tag: Image Updater's defaults `image.name` and `image.tag` are written",
                        );
                    }
                    lines.push(format!(
                        "tag = {}",
                        quoted(tag.as_deref().unwrap_or("image.tag"))
                    ));
                    lines.push(format!(
                        "repository = {}",
                        quoted(name.as_deref().unwrap_or("image.name"))
                    ));
                }
            }
            vec![lines]
        }
        Some(t) if t.starts_with("kustomization") => {
            let dir = t.strip_prefix("kustomization:").unwrap_or(".");
            let dir = resolve(w, app, dir, what);
            let path = if dir.is_empty() {
                "kustomization.yaml".to_string()
            } else {
                format!("{dir}/kustomization.yaml")
            };
            let mut lines = vec![
                format!("kind = {}", quoted("kustomization")),
                format!("file = {}", quoted(&path)),
            ];
            if let Some(n) = &image.kustomize_name {
                lines.push(format!("name = {}", quoted(n)));
            }
            vec![lines]
        }
        _ => {
            w.inexact(
                what,
                "Image Updater wrote it to `.argocd-source-APP.yaml` (or the Application), which only Argo CD reads: the image below is commented out until a target (the values file or kustomization that deploys it) is added",
            );
            Vec::new()
        }
    }
}

/// A write-back target's path in the repository: absolute ones (`/config/base`) from its
/// root, relative ones from the application's source path, as Image Updater reads them.
fn resolve(w: &mut Writer, app: &App, path: &str, what: &str) -> String {
    let joined = match (path.strip_prefix('/'), &app.source_path) {
        (Some(absolute), _) => absolute.to_string(),
        (None, Some(base)) => format!("{base}/{path}"),
        (None, None) => {
            w.inexact(
                what,
                &format!("`{path}` is relative to the Application's source path, which is not among the inputs: it is read from the repository root"),
            );
            path.to_string()
        }
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// `nginx:1.20` as the image and what follows its `:` (a port's `:` is not one).
fn split_constraint(image: &str) -> (String, Option<String>) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].split_once(':') {
        Some((name, constraint)) => (
            format!("{}{name}", &image[..slash]),
            Some(constraint.to_string()),
        ),
        None => (image.to_string(), None),
    }
}

/// The last part of an image's path, Image Updater's alias when none is given.
fn short_name(image: &str) -> String {
    let (name, _) = split_constraint(image);
    name.rsplit('/').next().unwrap_or(&name).to_string()
}

fn list_of(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_follow_the_image_name() {
        assert_eq!(
            split_constraint("nginx:1.20"),
            ("nginx".to_string(), Some("1.20".to_string()))
        );
        assert_eq!(
            split_constraint("localhost:5000/app:~1.2"),
            ("localhost:5000/app".to_string(), Some("~1.2".to_string()))
        );
        assert_eq!(
            split_constraint("quay.io/dexidp/dex"),
            ("quay.io/dexidp/dex".to_string(), None)
        );
        assert_eq!(short_name("quay.io/dexidp/dex:latest"), "dex");
    }
}
