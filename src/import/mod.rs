//! `image-updater import`: another tool's image automation, read from its manifests, written
//! as an `updater.toml`.
//!
//! What the other tool says is translated key by key. Where there is no exact equivalent (a
//! Go template commit message, a Kubernetes secret, an order we do not sort in), the config
//! says so in an `# import:` comment at that place, and the summary lists it; nothing is
//! silently dropped. The result is meant to pass `check` as written: a section that cannot
//! stand (an image whose marker is in no file) is written commented out, with why.
//!
//! - [`flux`]: Flux's image automation (`ImageRepository`, `ImagePolicy`,
//!   `ImageUpdateAutomation`, `GitRepository`) and the `$imagepolicy` markers in the files
//!   under each automation's path;
//! - [`argocd`]: Argo CD Image Updater's `Application` annotations (v0.x), its
//!   `ImageUpdater` resources (v1.x) and its `registries.conf`.
//!
//! [`import`] reads which tool the inputs are for by their kinds.
//!
//! Manifests are read with the write-back's YAML reader, which keeps every document of a file
//! and reads `kind: List` (what `kubectl get -o yaml` prints) like any other document.

pub mod argocd;
pub mod flux;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::writeback::yaml::{Node, Yaml};

/// One input: a name for messages (a path, or `-`) and its text.
pub struct Input {
    pub name: String,
    pub text: String,
}

/// How the import is told what the manifests do not say.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The manifests repository's url, for a `GitRepository` the inputs do not hold.
    pub repository_url: Option<String>,
    /// A checkout of the manifests repository, where markers are looked for.
    pub repo_dir: Option<PathBuf>,
}

/// The config written, and what could not be translated exactly (the summary).
#[derive(Debug, Clone)]
pub struct Imported {
    pub toml: String,
    pub notes: Vec<String>,
    /// What was read, by kind, for the summary: `("ImagePolicy", 3)`.
    pub read: Vec<(&'static str, usize)>,
}

/// Why nothing could be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("{name}: not YAML: {message}")]
    Yaml { name: String, message: String },
    #[error(
        "the inputs hold no image automation: no Flux ImagePolicy, no Application with Argo CD Image Updater's annotations, no ImageUpdater, no registries.conf"
    )]
    Nothing,
    #[error(
        "the inputs hold both Flux's and Argo CD Image Updater's objects: import each on its own"
    )]
    Mixed,
}

/// Translates the inputs, for the tool whose objects they hold. They are parsed once here,
/// and the tool's importer reads the objects found.
pub fn import(inputs: &[Input], options: &Options) -> Result<Imported, ImportError> {
    let mut yamls = Vec::new();
    let places = objects(inputs, &mut yamls)?;
    let found: Vec<Object> = places
        .iter()
        .filter_map(|p| object(inputs, &yamls, p))
        .collect();
    let has = |names: &[&str]| found.iter().any(|o| names.contains(&o.kind.as_str()));
    let flux = has(&["ImagePolicy", "ImageUpdateAutomation", "ImageRepository"]);
    let argocd = has(&["Application", "ImageUpdater"])
        || yamls.iter().flat_map(|y| &y.documents).any(|d| {
            d.get("registries").is_some() || at(d, &["data", "registries.conf"]).is_some()
        });
    match (flux, argocd) {
        (true, true) => Err(ImportError::Mixed),
        (true, false) => flux::import(&found, options),
        _ => argocd::import(&found, &yamls, options),
    }
}

/// A Kubernetes object read from an input: its kind, name, namespace and the whole node.
pub struct Object<'a> {
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub node: &'a Node,
    pub source: &'a str,
}

impl Object<'_> {
    /// `namespace/name`, as messages name it.
    pub fn id(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    /// The scalar at `path` under the object.
    pub fn str_at(&self, path: &[&str]) -> Option<String> {
        at(self.node, path)?.as_str().map(str::to_string)
    }
}

/// The node at `path` (mapping keys) under `node`.
pub fn at<'a>(node: &'a Node, path: &[&str]) -> Option<&'a Node> {
    path.iter().try_fold(node, |n, key| n.get(key))
}

/// The items of a sequence node.
pub fn items(node: Option<&Node>) -> &[Node] {
    match node {
        Some(Node::Seq { items, .. }) => items,
        _ => &[],
    }
}

/// Parses every input and calls `each` with every object in it (the items of a `List` too).
pub fn objects(
    inputs: &[Input],
    yamls: &mut Vec<Yaml>,
) -> Result<Vec<(usize, usize, Vec<usize>)>, ImportError> {
    // (input, document, path of List items) for each object; the nodes are borrowed later.
    let mut found = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let yaml = Yaml::parse(&input.text).map_err(|e| ImportError::Yaml {
            name: input.name.clone(),
            message: e.message,
        })?;
        for (d, doc) in yaml.documents.iter().enumerate() {
            if doc.get("kind").and_then(Node::as_str) == Some("List") {
                for (k, _) in items(doc.get("items")).iter().enumerate() {
                    found.push((i, d, vec![k]));
                }
            } else if doc.get("kind").is_some() {
                found.push((i, d, Vec::new()));
            }
        }
        yamls.push(yaml);
    }
    Ok(found)
}

/// The object at a place [`objects`] found.
pub fn object<'a>(
    inputs: &'a [Input],
    yamls: &'a [Yaml],
    (i, d, list): &(usize, usize, Vec<usize>),
) -> Option<Object<'a>> {
    let mut node = &yamls[*i].documents[*d];
    if let Some(k) = list.first() {
        node = items(node.get("items")).get(*k)?;
    }
    let s = |path: &[&str]| at(node, path).and_then(Node::as_str).map(str::to_string);
    Some(Object {
        kind: s(&["kind"])?,
        name: s(&["metadata", "name"]).unwrap_or_default(),
        namespace: s(&["metadata", "namespace"]).unwrap_or_else(|| "default".into()),
        node,
        source: &inputs[*i].text,
    })
}

/// A TOML string, quoted and escaped.
pub fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A config being written: sections in order, each with its comments.
#[derive(Default)]
pub struct Writer {
    pub text: String,
    pub notes: Vec<String>,
}

impl Writer {
    pub fn line(&mut self, line: impl AsRef<str>) {
        self.text.push_str(line.as_ref());
        self.text.push('\n');
    }

    /// `key = "value"`.
    pub fn string(&mut self, key: &str, value: &str) {
        let _ = writeln!(self.text, "{key} = {}", quoted(value));
    }

    /// Appends `section` (an image's table, written apart), commented out when it cannot
    /// stand yet; its `# import:` comments stay comments either way.
    pub fn append(&mut self, mut section: Writer, commented: bool) {
        self.notes.append(&mut section.notes);
        for line in section.text.lines() {
            if commented && !line.starts_with("# import:") {
                self.line(format!("# {line}"));
            } else {
                self.line(line);
            }
        }
        self.line("");
    }

    /// An `# import:` comment here, and the same in the summary under `what`.
    pub fn inexact(&mut self, what: &str, why: &str) {
        for line in wrap(why, 92) {
            let _ = writeln!(self.text, "# import: {line}");
        }
        self.notes.push(format!("{what}: {why}"));
    }
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// A table name from any text: letters, digits, `-` and `_`.
pub fn alias(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches('-').to_string();
    if cleaned.is_empty() {
        "imported".into()
    } else {
        cleaned
    }
}

/// Every YAML file under `dir/path` (a relative path; `./` and a leading `/` are read from
/// `dir`), as (path relative to `dir`, text), in path order.
pub fn yaml_files(dir: &Path, path: &str) -> Vec<(String, String)> {
    let start = dir.join(path.trim_start_matches("./").trim_start_matches('/'));
    let mut out = Vec::new();
    let mut stack = vec![start];
    while let Some(p) = stack.pop() {
        if p.file_name().is_some_and(|n| n == ".git") {
            continue;
        }
        // Symlinks are not followed: the repository's own files only.
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file()
            && p.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && let (Ok(text), Ok(relative)) = (std::fs::read_to_string(&p), p.strip_prefix(dir))
        {
            out.push((relative.display().to_string(), text));
        }
    }
    out.sort();
    out
}
