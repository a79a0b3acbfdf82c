//! Flux's image automation as an `updater.toml`, from the image-reflector-controller's and
//! image-automation-controller's API references:
//!
//! - an `ImageRepository` (`spec.image`, `interval`, `provider`, `secretRef`,
//!   `exclusionList`, `insecure`) is a registry and an image;
//! - an `ImagePolicy` (`semver.range`, `alphabetical.order`, `numerical.order`,
//!   `filterTags.pattern` and `extract`, `digestReflectionPolicy`) is an image's policy,
//!   named by the policy;
//! - an `ImageUpdateAutomation` (`sourceRef`, `git.checkout.ref.branch`, `git.push.branch`,
//!   `git.commit.author`, `git.commit.messageTemplate`, `update.path`) is an environment,
//!   with the repository its `GitRepository` names; every policy of its namespace is deployed
//!   to it, as Flux runs them;
//! - the `$imagepolicy` markers in the files under an automation's path are the images'
//!   targets (`kind = "marker"`, which reads Flux's markers as Flux writes them).

use std::collections::BTreeMap;
use std::path::Path;

use super::{ImportError, Imported, Object, Options, Writer, alias, items, quoted};

struct Repository {
    namespace: String,
    name: String,
    image: String,
    interval: Option<String>,
    provider: Option<String>,
    secret: Option<String>,
    exclusions: Option<Vec<String>>,
    insecure: bool,
}

struct Policy {
    namespace: String,
    name: String,
    repository: (String, String),
    strategy: Strategy,
    pattern: Option<String>,
    extract: Option<String>,
    digest: Option<String>,
}

enum Strategy {
    Semver(String),
    Alphabetical(String),
    Numerical(String),
    Unknown,
}

struct Automation {
    namespace: String,
    name: String,
    source: Option<String>,
    checkout: Option<String>,
    push: Option<String>,
    refspec: Option<String>,
    author: Option<(String, String)>,
    template: Option<String>,
    path: String,
}

/// Flux's default exclusion list: cosign's signature tags, which we skip anyway.
const DEFAULT_EXCLUSIONS: &[&str] = &["^.*\\.sig$"];

/// Translates the Flux objects among `objects`.
pub fn import(objects: &[Object], options: &Options) -> Result<Imported, ImportError> {
    let repositories: Vec<Repository> = objects
        .iter()
        .filter(|o| o.kind == "ImageRepository")
        .filter_map(repository)
        .collect();
    let policies: Vec<Policy> = objects
        .iter()
        .filter(|o| o.kind == "ImagePolicy")
        .map(policy)
        .collect();
    let automations: Vec<Automation> = objects
        .iter()
        .filter(|o| o.kind == "ImageUpdateAutomation")
        .map(automation)
        .collect();
    let git: BTreeMap<(String, String), Option<String>> = objects
        .iter()
        .filter(|o| o.kind == "GitRepository")
        .map(|o| {
            (
                (o.namespace.clone(), o.name.clone()),
                o.str_at(&["spec", "url"]),
            )
        })
        .collect();
    if policies.is_empty() {
        return Err(ImportError::Nothing);
    }
    let mut w = Writer::default();
    w.line("# Imported from Flux image automation by `image-updater import`.");
    w.line("# Each `# import:` comment marks what could not be translated exactly, and why.");
    w.line("");
    registries(&mut w, &repositories);
    let envs = environments(&mut w, &automations, &git, options);
    for p in &policies {
        image(&mut w, p, &repositories, &automations, &envs, options);
    }
    Ok(Imported {
        toml: w.text,
        notes: w.notes,
        read: vec![
            ("ImageRepository", repositories.len()),
            ("ImagePolicy", policies.len()),
            ("ImageUpdateAutomation", automations.len()),
            ("GitRepository", git.len()),
        ],
    })
}

fn repository(o: &Object) -> Option<Repository> {
    Some(Repository {
        namespace: o.namespace.clone(),
        name: o.name.clone(),
        image: o.str_at(&["spec", "image"])?,
        interval: o.str_at(&["spec", "interval"]),
        provider: o.str_at(&["spec", "provider"]),
        secret: o.str_at(&["spec", "secretRef", "name"]),
        exclusions: super::at(o.node, &["spec", "exclusionList"]).map(|list| {
            items(Some(list))
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        }),
        insecure: o.str_at(&["spec", "insecure"]).as_deref() == Some("true"),
    })
}

fn policy(o: &Object) -> Policy {
    let order = |kind: &str| {
        o.str_at(&["spec", "policy", kind, "order"])
            .unwrap_or_else(|| "asc".into())
    };
    let spec_policy = super::at(o.node, &["spec", "policy"]);
    let strategy = if let Some(range) = o.str_at(&["spec", "policy", "semver", "range"]) {
        Strategy::Semver(range)
    } else if spec_policy.and_then(|p| p.get("alphabetical")).is_some() {
        Strategy::Alphabetical(order("alphabetical"))
    } else if spec_policy.and_then(|p| p.get("numerical")).is_some() {
        Strategy::Numerical(order("numerical"))
    } else {
        Strategy::Unknown
    };
    Policy {
        namespace: o.namespace.clone(),
        name: o.name.clone(),
        repository: (
            o.str_at(&["spec", "imageRepositoryRef", "namespace"])
                .unwrap_or_else(|| o.namespace.clone()),
            o.str_at(&["spec", "imageRepositoryRef", "name"])
                .unwrap_or_default(),
        ),
        strategy,
        pattern: o.str_at(&["spec", "filterTags", "pattern"]),
        extract: o.str_at(&["spec", "filterTags", "extract"]),
        digest: o.str_at(&["spec", "digestReflectionPolicy"]),
    }
}

fn automation(o: &Object) -> Automation {
    Automation {
        namespace: o.namespace.clone(),
        name: o.name.clone(),
        source: o.str_at(&["spec", "sourceRef", "name"]),
        checkout: o.str_at(&["spec", "git", "checkout", "ref", "branch"]),
        push: o.str_at(&["spec", "git", "push", "branch"]),
        refspec: o.str_at(&["spec", "git", "push", "refspec"]),
        author: o
            .str_at(&["spec", "git", "commit", "author", "name"])
            .zip(o.str_at(&["spec", "git", "commit", "author", "email"])),
        template: o.str_at(&["spec", "git", "commit", "messageTemplate"]),
        path: o
            .str_at(&["spec", "update", "path"])
            .unwrap_or_else(|| ".".into()),
    }
}

/// The registry host of an image reference, as Docker and Flux read it.
fn host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.into(),
        _ => "docker.io".into(),
    }
}

fn registries(w: &mut Writer, repositories: &[Repository]) {
    let mut hosts: BTreeMap<String, Vec<&Repository>> = BTreeMap::new();
    for r in repositories {
        hosts.entry(host(&r.image)).or_default().push(r);
    }
    for (host, repos) in hosts {
        w.line(format!("[registries.{}]", alias(&host.replace('.', "-"))));
        w.string("prefix", &host);
        if host != "docker.io" && repos.iter().any(|r| r.insecure) {
            w.string("api_url", &format!("http://{host}"));
            w.line("insecure = true");
        }
        let provider = repos
            .iter()
            .find_map(|r| r.provider.as_deref().filter(|p| *p != "generic"));
        match provider {
            Some(p @ ("aws" | "gcp" | "azure")) => w.string("credentials", p),
            Some(other) => w.inexact(
                &format!("registry {host}"),
                &format!("provider `{other}` has no equivalent; set credentials by hand"),
            ),
            None => {}
        }
        for r in repos.iter().filter(|r| r.secret.is_some()) {
            w.inexact(
                &format!("ImageRepository {}/{}", r.namespace, r.name),
                &format!(
                    "its credentials are in the Kubernetes secret `{}`, which image-updater cannot read: put them in a file or the environment and set credentials = \"file:PATH\" or \"env:NAME\" (a docker config works: \"docker-config:PATH\")",
                    r.secret.as_deref().unwrap_or_default()
                ),
            );
        }
        w.line("");
    }
}

/// Writes one environment per automation (and the repositories they push to); returns the
/// environments' names by automation (namespace, name).
fn environments(
    w: &mut Writer,
    automations: &[Automation],
    git: &BTreeMap<(String, String), Option<String>>,
    options: &Options,
) -> BTreeMap<(String, String), String> {
    let mut names = BTreeMap::new();
    let mut written_repos: Vec<String> = Vec::new();
    for a in automations {
        let repo = alias(a.source.as_deref().unwrap_or("manifests"));
        if !written_repos.contains(&repo) {
            written_repos.push(repo.clone());
            w.line(format!("[repositories.{repo}]"));
            let url = a
                .source
                .as_ref()
                .and_then(|s| {
                    git.get(&(a.namespace.clone(), s.clone()))
                        .cloned()
                        .flatten()
                })
                .or_else(|| options.repository_url.clone());
            match url {
                Some(url) => w.string("url", &url),
                None => {
                    w.inexact(
                        &format!("ImageUpdateAutomation {}/{}", a.namespace, a.name),
                        &format!(
                            "its GitRepository `{}` is not among the inputs: the url below is a placeholder (or pass --repository-url)",
                            a.source.as_deref().unwrap_or("?")
                        ),
                    );
                    w.string("url", "https://git.example.invalid/CHANGE-ME.git");
                }
            }
            if let Some((name, email)) = &a.author {
                w.string("author", &format!("{name} <{email}>"));
            }
            if let Some(template) = &a.template {
                w.inexact(
                    &format!("ImageUpdateAutomation {}/{}", a.namespace, a.name),
                    "its commit message is a Go template, which is not translated; the default message lists every change. Our template's fields are {environment}, {branch}, {repository}, {summary}, {changes} and {count}",
                );
                for line in template.lines() {
                    w.line(format!("#   {line}"));
                }
            }
            w.line("");
        }
        let env = alias(&a.name);
        names.insert((a.namespace.clone(), a.name.clone()), env.clone());
        w.line(format!("[environments.{env}]"));
        w.string("repository", &repo);
        let checkout = a.checkout.clone().unwrap_or_else(|| "main".into());
        match (&a.push, &a.refspec) {
            (_, Some(refspec)) => {
                w.inexact(
                    &format!("ImageUpdateAutomation {}/{}", a.namespace, a.name),
                    &format!(
                        "it pushes with the refspec `{refspec}`; image-updater pushes to one branch (below), or proposes a pull request with write = \"pull-request\""
                    ),
                );
                w.string("branch", a.push.as_deref().unwrap_or(&checkout));
            }
            (Some(push), None) if *push != checkout => {
                w.string("branch", push);
                w.string("base_branch", &checkout);
            }
            _ => w.string("branch", &checkout),
        }
        w.line("");
    }
    names
}

fn image(
    w: &mut Writer,
    p: &Policy,
    repositories: &[Repository],
    automations: &[Automation],
    envs: &BTreeMap<(String, String), String>,
    options: &Options,
) {
    let what = format!("ImagePolicy {}/{}", p.namespace, p.name);
    let Some(repo) = repositories
        .iter()
        .find(|r| (r.namespace.clone(), r.name.clone()) == p.repository)
    else {
        w.inexact(
            &what,
            &format!(
                "its ImageRepository {}/{} is not among the inputs; the image is left out",
                p.repository.0, p.repository.1
            ),
        );
        w.line("");
        return;
    };
    // The automations that run this policy (those of its namespace), and the files under
    // each one's path that carry its markers.
    let marker = format!("{}:{}", p.namespace, p.name);
    let mut targets: Vec<(String, Vec<String>)> = Vec::new();
    for a in automations.iter().filter(|a| a.namespace == p.namespace) {
        let env = envs[&(a.namespace.clone(), a.name.clone())].clone();
        let files = match &options.repo_dir {
            Some(dir) => marked_files(dir, &a.path, &marker),
            None => Vec::new(),
        };
        targets.push((env, files));
    }
    let name = alias(&p.name);
    let comment_out = targets.iter().all(|(_, files)| files.is_empty());
    if comment_out {
        w.inexact(
            &what,
            &if options.repo_dir.is_some() {
                format!(
                    "no file under its automation's path carries the marker {{\"$imagepolicy\": \"{marker}\"}}: the image below is commented out until a target is added"
                )
            } else {
                "the manifests repository was not given (--repo-dir), so its markers could not be found: the image below is commented out until a target is added".to_string()
            },
        );
    }
    let mut section = Writer::default();
    section.line(format!("[images.{name}]"));
    section.string("image", &repo.image);
    let deployed: Vec<&String> = targets
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(e, _)| e)
        .collect();
    if !comment_out && deployed.len() < envs.len() {
        let list: Vec<String> = deployed.iter().map(|e| quoted(e)).collect();
        section.line(format!("environments = [{}]", list.join(", ")));
    }
    if let Some(interval) = &repo.interval {
        section.string("interval", interval);
    }
    strategy(&mut section, p, &what);
    exclusions(&mut section, repo);
    if p.digest.as_deref() == Some("Always") {
        section.line("pin_digest = true");
    } else if p.digest.as_deref() == Some("IfNotPresent") {
        section.inexact(
            &what,
            "digestReflectionPolicy IfNotPresent keeps the first digest seen for a tag; image-updater resolves a written digest every poll (pin_digest = true), so it is not set",
        );
    }
    let per_env = deployed.len() > 1;
    for (env, files) in targets.iter().filter(|(_, f)| !f.is_empty()) {
        for file in files {
            if per_env {
                section.line(format!("[[images.{name}.env.{env}.targets]]"));
            } else {
                section.line(format!("[[images.{name}.targets]]"));
            }
            section.string("kind", "marker");
            section.string("file", file);
            section.string("policy", &marker);
        }
    }
    w.append(section, comment_out);
}

fn strategy(w: &mut Writer, p: &Policy, what: &str) {
    match &p.strategy {
        Strategy::Semver(range) => {
            w.string("strategy", "semver");
            w.string("constraint", range);
            // Flux's semver includes a range's pre-releases only where the range names one,
            // as Masterminds does; so does ours.
        }
        Strategy::Alphabetical(order) | Strategy::Numerical(order) => {
            let kind = if matches!(p.strategy, Strategy::Alphabetical(_)) {
                "alphabetical"
            } else {
                "numerical"
            };
            w.string("strategy", kind);
            if order != "asc" {
                w.inexact(
                    what,
                    &format!(
                        "{kind} order `{order}` (the lowest wins) has no equivalent: image-updater takes the highest, as order asc does"
                    ),
                );
            }
        }
        Strategy::Unknown => w.inexact(
            what,
            "its policy is none of semver, alphabetical and numerical; semver (the default) is used",
        ),
    }
    let Some(pattern) = &p.pattern else {
        return;
    };
    let checked = regex::Regex::new(pattern);
    if let Err(e) = &checked {
        w.inexact(
            what,
            &format!(
                "its filterTags pattern does not compile as a Rust regex (RE2 syntax mostly matches; this does not): {e}; it is left out"
            ),
        );
        return;
    }
    match p.extract.as_deref().map(str::trim) {
        None | Some("") => w.line(format!(
            "allow_tags = [{}]",
            quoted(&format!("regexp:{pattern}"))
        )),
        Some(extract) => {
            // Flux builds the sort key by expanding `extract` (`$ts`) with the pattern's
            // groups; ours takes the pattern's first named group (or group 1) as the key.
            let group = extract
                .strip_prefix('$')
                .map(|g| g.trim_start_matches('{').trim_end_matches('}'));
            let first_named = checked
                .as_ref()
                .ok()
                .and_then(|re| re.capture_names().flatten().next().map(str::to_string));
            let exact = match (group, &first_named) {
                (Some(g), Some(first)) => g == first,
                (Some("1"), None) => true,
                _ => false,
            };
            w.string("extract", pattern);
            if !exact {
                w.inexact(
                    what,
                    &format!(
                        "extract `{extract}` is not one group of the pattern; image-updater sorts by the pattern's first named group (or group 1)"
                    ),
                );
            }
        }
    }
}

fn exclusions(w: &mut Writer, repo: &Repository) {
    let Some(list) = &repo.exclusions else {
        return;
    };
    let own: Vec<String> = list
        .iter()
        .filter(|e| !DEFAULT_EXCLUSIONS.contains(&e.as_str()))
        .filter(|e| regex::Regex::new(e).is_ok())
        .map(|e| quoted(&format!("regexp:{e}")))
        .collect();
    if !own.is_empty() {
        w.line(format!("ignore_tags = [{}]", own.join(", ")));
    }
}

/// The files under `dir/path` with a marker of `policy` (`namespace:name`), relative to
/// `dir`, as a marker target names them.
fn marked_files(dir: &Path, path: &str, policy: &str) -> Vec<String> {
    super::yaml_files(dir, path)
        .into_iter()
        .filter(|(_, text)| {
            text.lines().any(|line| {
                line.split_once('#').is_some_and(|(_, comment)| {
                    let compact: String = comment.chars().filter(|c| !c.is_whitespace()).collect();
                    compact.contains(&format!("\"$imagepolicy\":\"{policy}\""))
                        || compact.contains(&format!("\"$imagepolicy\":\"{policy}:"))
                })
            })
        })
        .map(|(file, _)| file)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_as_docker_reads_them() {
        assert_eq!(host("ghcr.io/stefanprodan/podinfo"), "ghcr.io");
        assert_eq!(host("stefanprodan/podinfo"), "docker.io");
        assert_eq!(host("nginx"), "docker.io");
        assert_eq!(host("localhost:5000/app"), "localhost:5000");
    }
}
