//! Real kustomize (`kubectl kustomize`, kustomize v5) for checking what a kustomization
//! renders, not only the bytes an edit changed.
//!
//! A kustomization from a real repository names resources, generators and patches that are
//! not beside it in a test. [`stub_tree`] lays the kustomization out in a temporary directory
//! and writes a small stand-in for each file it references: every resource becomes a
//! Deployment whose container runs the image under test, so the rendered `image:` is what the
//! kustomization's `images:` make of it.

use std::path::{Path, PathBuf};
use std::process::Command;

use image_updater::writeback::yaml::{Node, Yaml};

pub const KUBECTL: &str = "kubectl";

/// Fails the test when kubectl (with its built-in kustomize) cannot run.
pub fn require_kubectl() {
    super::need::missing("", &[super::need::Component::Kubectl]);
}

/// `kubectl kustomize DIR`, or its error.
pub fn build(dir: &Path) -> Result<String, String> {
    let out = Command::new(KUBECTL)
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("utf-8"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Every container `image:` in rendered YAML.
pub fn images(rendered: &str) -> Vec<String> {
    rendered
        .lines()
        .filter_map(|l| {
            l.trim_start()
                .trim_start_matches("- ")
                .strip_prefix("image: ")
        })
        .map(|v| v.trim().trim_matches('"').to_string())
        .collect()
}

fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  template:\n    spec:\n      containers:\n      - name: {name}\n        image: {image}\n"
    )
}

/// The string values of a top-level list in `doc` (`resources`, `components`, ...), and the
/// `path` and `files` of the items of others.
fn listed(doc: &Node, key: &str) -> Vec<String> {
    let Some(Node::Seq { items, .. }) = doc.get(key) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Node::Scalar { value, .. } => out.push(value.clone()),
            Node::Map { .. } => {
                if let Some(p) = item.get("path").and_then(Node::as_str) {
                    out.push(p.to_string());
                }
                if let Some(Node::Seq { items, .. }) = item.get("files") {
                    out.extend(items.iter().filter_map(Node::as_str).map(|f| {
                        // `key=path` names a file under another key.
                        f.rsplit('=').next().unwrap_or(f).to_string()
                    }));
                }
            }
            _ => {}
        }
    }
    out
}

/// Lays out `kustomization` in a fresh directory under `root`, with stand-ins for what it
/// references, each resource running `image`. Returns the directory to build: the
/// kustomization's own, or for a Component a parent that uses it on a stand-in resource.
pub fn stub_tree(root: &Path, kustomization: &str, image: &str) -> PathBuf {
    // Deep enough that `../../bases/x` stays inside `root`.
    let dir = root.join("a/b/c/d/k");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kustomization.yaml"), kustomization).unwrap();
    let yaml = Yaml::parse(kustomization).expect("the kustomization parses");
    let doc = &yaml.documents[0];
    let write = |rel: &str, text: &str| {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if !path.exists() {
            std::fs::write(path, text).unwrap();
        }
    };
    let is_file = |r: &str| r.ends_with(".yaml") || r.ends_with(".yml") || r.ends_with(".json");
    for (n, r) in listed(doc, "resources").iter().enumerate() {
        let name = format!("stub{n}");
        if is_file(r) {
            write(r, &deployment(&name, image));
        } else {
            write(&format!("{r}/deployment.yaml"), &deployment(&name, image));
            write(
                &format!("{r}/kustomization.yaml"),
                "resources:\n- deployment.yaml\n",
            );
        }
    }
    for key in ["configMapGenerator", "secretGenerator"] {
        for f in listed(doc, key) {
            write(&f, "stub\n");
        }
    }
    for f in listed(doc, "configurations") {
        write(&f, "images: []\n");
    }
    for f in listed(doc, "transformers") {
        write(
            &f,
            "apiVersion: builtin\nkind: LabelTransformer\nmetadata:\n  name: stub\nlabels:\n  stub: \"true\"\nfieldSpecs:\n- path: metadata/labels\n  create: true\n",
        );
    }
    for key in ["patches", "patchesStrategicMerge", "patchesJson6902"] {
        for f in listed(doc, key) {
            if is_file(&f) {
                // A strategic-merge patch of a Deployment no stand-in is named after.
                write(
                    &f,
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: patched-elsewhere\n",
                );
            }
        }
    }
    if doc.get("kind").and_then(Node::as_str) == Some("Component") {
        let parent = root.join("a/b/c/d/wrap");
        std::fs::create_dir_all(&parent).unwrap();
        std::fs::write(parent.join("stub.yaml"), deployment("stub", image)).unwrap();
        std::fs::write(
            parent.join("kustomization.yaml"),
            "resources:\n- stub.yaml\ncomponents:\n- ../k\n",
        )
        .unwrap();
        return parent;
    }
    dir
}
