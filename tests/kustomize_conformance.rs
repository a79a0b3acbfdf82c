//! kustomize's own test tables (`../shared/conformance/kustomize-set-image.json` and
//! `kustomize-image-transformer.json`, from kustomize @12f9e63) run through the kustomization
//! target.
//!
//! - `set_image`: each `kustomize edit set image` argument becomes the image and tag the target
//!   writes (a `*` keeps what the entry has; a new name for an entry is a declared migration,
//!   `replaces`); the entries that result must be the ones kustomize writes.
//! - the transformer tables: the target writes the `images:` entry the case describes into a
//!   kustomization over the case's resources, and real kustomize (`kubectl kustomize`) renders
//!   it; the images rendered must be the ones the case expects. `kustomize_build` cases bring
//!   their own kustomization: the target must find it already says what it says (no edit).
//! - `split`: our reading of a reference's parts, against kustomize's `image.Split`.
//!
//! Cases that cannot go through the target are listed in [`EXCEPTIONS`] with why; a listed case
//! that starts agreeing fails the test, so the list stays true.

mod harness;

use std::collections::BTreeMap;

use harness::kustomize;
use image_updater::config::Target;
use image_updater::reference::Reference;
use image_updater::writeback::yaml::{Node, Yaml};
use image_updater::writeback::{Desired, edit, split_image};
use serde_json::Value;

/// Cases that do not go through the kustomization target, and why.
const EXCEPTIONS: &[(&str, &str)] = &[
    (
        "kzs-0015",
        "an error of the kustomize CLI's argument parsing (no argument); the config's validation takes that role",
    ),
    (
        "kzs-0016",
        "an error of the kustomize CLI's argument parsing (malformed arguments); the config's validation takes that role",
    ),
    (
        "kzs-0035",
        "the entry name is the invalid regexp `[`: image-updater names entries by image reference, and `[` is none",
    ),
    (
        "kzs-0030",
        "a sha512 digest: matching other digests than sha256 came after kustomize api v0.21.1 (the table says so), and the kustomize in kubectl here predates it",
    ),
    (
        "kzs-0031",
        "a sha512 digest: matching other digests than sha256 came after kustomize api v0.21.1 (the table says so), and the kustomize in kubectl here predates it",
    ),
    (
        "kzs-0032",
        "a sha512 digest: matching other digests than sha256 came after kustomize api v0.21.1 (the table says so), and the kustomize in kubectl here predates it",
    ),
    (
        "kzs-0033",
        "a multihash digest: matching other digests than sha256 came after kustomize api v0.21.1 (the table says so), and the kustomize in kubectl here predates it",
    ),
    (
        "kzt-0001",
        "the case's newName `theImageShouldNotChangeInACrd` has upper case, so it is no image reference a config could name",
    ),
    (
        "kzt-0018",
        "tagSuffix: image-updater never writes one, and refuses an entry that has one (it would change every tag written)",
    ),
    (
        "kzt-0040",
        "the entry name is the invalid regexp `[`: image-updater names entries by image reference, and `[` is none",
    ),
];

fn table(name: &str) -> Vec<Value> {
    harness::shared::conformance_table(name)
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v[key].as_str().filter(|s| !s.is_empty())
}

/// An `images:` entry as a map of its keys.
type Entry = BTreeMap<String, String>;

fn entries(text: &str) -> Vec<Entry> {
    let yaml = Yaml::parse(text).expect("the kustomization parses");
    let Some(Node::Seq { items, .. }) = yaml.documents.first().and_then(|d| d.get("images")) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| match item {
            Node::Map { entries, .. } => entries
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect(),
            _ => Entry::new(),
        })
        .collect()
}

fn desired(
    name_as_written: &str,
    tag: Option<&str>,
    digest: Option<&str>,
    replaces: Vec<String>,
) -> Option<Desired> {
    let r = Reference::parse(name_as_written).ok()?;
    Some(Desired {
        repository: r.repository(),
        written: name_as_written.to_string(),
        tag: tag.map(String::from),
        digest: digest.map(String::from),
        replaces,
        chart: None,
    })
}

fn target(name: &str) -> Target {
    Target::Kustomization {
        file: "kustomization.yaml".into(),
        name: name.to_string(),
    }
}

/// One `kustomize edit set image` argument applied through the target.
fn set_image(text: &str, arg: &str) -> Result<String, String> {
    // `name=new:tag@digest`, or `name:tag@digest` naming the entry by the image itself.
    let (name, spec) = match arg.split_once('=') {
        Some((name, spec)) => (name.to_string(), spec.to_string()),
        None => (split_image(arg).0.to_string(), arg.to_string()),
    };
    let (new_name, tag, digest) = split_image(&spec);
    let existing = entries(text)
        .into_iter()
        .find(|e| e.get("name") == Some(&name));
    let current = |key: &str| existing.as_ref().and_then(|e| e.get(key)).cloned();
    let rendered = current("newName").unwrap_or_else(|| name.clone());
    let new_name = if new_name == "*" {
        rendered.clone()
    } else {
        new_name.to_string()
    };
    let tag = match tag {
        Some("*") => current("newTag"),
        t => t.map(String::from),
    };
    let digest = match digest {
        Some("*") => current("digest"),
        d => d.map(String::from),
    };
    // Giving the entry a new name is the command's explicit say-so: a declared migration.
    let replaces = if existing.is_some() && rendered != new_name {
        vec![rendered]
    } else {
        Vec::new()
    };
    let desired = desired(&new_name, tag.as_deref(), digest.as_deref(), replaces)
        .ok_or_else(|| format!("`{new_name}` is not an image reference"))?;
    match edit(&target(&name), text, &desired) {
        Ok(Some(e)) => Ok(e.new_text),
        Ok(None) => Ok(text.to_string()),
        Err(e) => Err(e.message),
    }
}

/// Runs a set_image case; `Err` says how it disagrees.
fn set_image_case(case: &Value) -> Result<(), String> {
    let mut text = match case["existing_kustomization_lines"].as_array() {
        Some(lines) => {
            let lines: Vec<&str> = lines.iter().filter_map(Value::as_str).collect();
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n{}\n",
                lines.join("\n")
            )
        }
        None => "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n".to_string(),
    };
    let args: Vec<&str> = case["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if args.is_empty() || case["expected_error"].is_string() {
        return Err("an argument error of the CLI".into());
    }
    for arg in args {
        text = set_image(&text, arg)?;
    }
    let mut got = entries(&text);
    let mut want: Vec<Entry> = case["expected_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .collect();
    // kustomize sorts the list by name; the target keeps the file's order.
    got.sort_by(|a, b| a.get("name").cmp(&b.get("name")));
    want.sort_by(|a, b| a.get("name").cmp(&b.get("name")));
    if got != want {
        return Err(format!("entries {got:?}, kustomize writes {want:?}"));
    }
    // A new file's entry is written whole, in kustomize's layout.
    if case["existing_kustomization_lines"].is_null() {
        let lines: Vec<&str> = case["expected_yaml_lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let block = lines.join("\n");
        if !text.contains(&block) {
            return Err(format!("the file is\n{text}\nkustomize writes\n{block}"));
        }
    }
    Ok(())
}

/// Every value of an `image` or `reference` key, sorted (kustomize's output sorts keys).
fn image_values(text: &str) -> Vec<String> {
    fn walk(node: &Node, out: &mut Vec<String>) {
        match node {
            Node::Map { entries, .. } => {
                for (k, v) in entries {
                    match (k.as_str(), v) {
                        (Some("image" | "reference"), Node::Scalar { value, .. }) => {
                            out.push(value.clone())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            Node::Seq { items, .. } => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for doc in Yaml::parse(text).expect("YAML").documents {
        walk(&doc, &mut out);
    }
    out.sort();
    out
}

/// The images kustomize renders for `resources` with `image` written by the target, field
/// specs (`path`s) in a configurations file when the case has its own.
fn render_with_target(
    image: &Value,
    field_specs: &[String],
    resources: &str,
) -> Result<Vec<String>, String> {
    let name = s(image, "name").ok_or("no name")?;
    if s(image, "tagSuffix").is_some() {
        return Err("tagSuffix".into());
    }
    let written = s(image, "newName").unwrap_or(name);
    let desired = desired(written, s(image, "newTag"), s(image, "digest"), Vec::new())
        .ok_or_else(|| format!("`{written}` is not an image reference"))?;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("resources.yaml"), resources).unwrap();
    let mut base = String::from("resources:\n- resources.yaml\n");
    // kustomize's own field specs for images; declaring one again conflicts with it.
    const DEFAULTS: &[&str] = &[
        "spec/containers[]/image",
        "spec/initContainers[]/image",
        "spec/template/spec/containers[]/image",
        "spec/template/spec/initContainers[]/image",
    ];
    let field_specs: Vec<&String> = field_specs
        .iter()
        .filter(|p| !DEFAULTS.contains(&p.as_str()))
        .collect();
    if !field_specs.is_empty() {
        let specs: String = field_specs
            .iter()
            .map(|p| format!("- path: {p}\n"))
            .collect();
        std::fs::write(tmp.path().join("config.yaml"), format!("images:\n{specs}")).unwrap();
        base.push_str("configurations:\n- config.yaml\n");
    }
    let text = edit(&target(name), &base, &desired)
        .map_err(|e| e.message)?
        .map(|e| e.new_text)
        .ok_or("no edit")?;
    std::fs::write(tmp.path().join("kustomization.yaml"), &text).unwrap();
    let rendered = kustomize::build(tmp.path())?;
    Ok(image_values(&rendered))
}

fn transformer_case(case: &Value) -> Result<(), String> {
    let kind = case["kind"].as_str().unwrap();
    let expected = case["expected_yaml"].as_str().unwrap();
    let got = match kind {
        "filter" | "legacy_filter" => {
            let specs: Vec<String> = case["field_specs"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["path"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            render_with_target(&case["image"], &specs, case["input_yaml"].as_str().unwrap())?
        }
        "transformer_plugin" => {
            // The plugin's config names the image and its field specs.
            let config = Yaml::parse(case["transformer_config_yaml"].as_str().unwrap()).unwrap();
            let doc = &config.documents[0];
            let tag = doc.get("imageTag").ok_or("no imageTag")?;
            // The plugin's config is decoded like Go's JSON: keys match without regard to case
            // (one case writes `Digest`).
            let Node::Map { entries, .. } = tag else {
                return Err("imageTag is not a mapping".into());
            };
            let image: serde_json::Map<String, Value> =
                ["name", "newName", "newTag", "digest", "tagSuffix"]
                    .iter()
                    .filter_map(|k| {
                        let (_, v) = entries.iter().find(|(key, _)| {
                            key.as_str().is_some_and(|key| key.eq_ignore_ascii_case(k))
                        })?;
                        Some((k.to_string(), Value::String(v.as_str()?.to_string())))
                    })
                    .collect();
            let specs: Vec<String> = match doc.get("fieldSpecs") {
                Some(Node::Seq { items, .. }) => items
                    .iter()
                    .filter_map(|i| i.get("path")?.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            };
            render_with_target(
                &Value::Object(image),
                &specs,
                case["input_yaml"].as_str().unwrap(),
            )?
        }
        "kustomize_build" => {
            let tmp = tempfile::tempdir().unwrap();
            for (path, text) in case["files"].as_object().unwrap() {
                let p = tmp.path().join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, text.as_str().unwrap()).unwrap();
            }
            let dir = tmp.path().join(case["build_dir"].as_str().unwrap());
            let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
            for e in entries(&kustomization) {
                let name = &e["name"];
                let written = e.get("newName").unwrap_or(name);
                let d = desired(
                    written,
                    e.get("newTag").map(String::as_str),
                    e.get("digest").map(String::as_str),
                    Vec::new(),
                )
                .ok_or_else(|| format!("`{written}` is not an image reference"))?;
                match edit(&target(name), &kustomization, &d) {
                    Ok(None) => {}
                    Ok(Some(_)) => {
                        return Err(format!(
                            "the target would edit images[{name}], which already says this"
                        ));
                    }
                    Err(err) => return Err(err.message),
                }
            }
            image_values(&kustomize::build(&dir)?)
        }
        other => panic!("unknown case kind {other}"),
    };
    let want = image_values(expected);
    if got != want {
        return Err(format!(
            "kustomize renders {got:?}, the case expects {want:?}"
        ));
    }
    Ok(())
}

fn split_case(case: &Value) -> Result<(), String> {
    let (name, tag, digest) = split_image(case["value"].as_str().unwrap());
    let got = (name, tag.unwrap_or(""), digest.unwrap_or(""));
    let want = (
        s(case, "name").unwrap_or(""),
        s(case, "tag").unwrap_or(""),
        s(case, "digest").unwrap_or(""),
    );
    (got == want)
        .then_some(())
        .ok_or(format!("{got:?}, kustomize splits {want:?}"))
}

/// kustomize's name matching, through the target: an entry named `images_name` with a new tag,
/// over a Deployment running `value`; matched when the rendered image took the tag.
fn matched_case(case: &Value) -> Result<(), String> {
    let name = case["images_name"].as_str().unwrap();
    let value = case["value"].as_str().unwrap();
    let d = desired(name, Some("matched"), None, Vec::new())
        .ok_or_else(|| format!("`{name}` is not an image reference"))?;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("deploy.yaml"),
        format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: {value}\n"),
    )
    .unwrap();
    let text = edit(&target(name), "resources:\n- deploy.yaml\n", &d)
        .map_err(|e| e.message)?
        .map(|e| e.new_text)
        .ok_or("no edit")?;
    std::fs::write(tmp.path().join("kustomization.yaml"), text).unwrap();
    let images = kustomize::images(&kustomize::build(tmp.path())?);
    let matched = images.iter().any(|i| i.contains(":matched"));
    let want = case["expected"].as_bool().unwrap();
    (matched == want).then_some(()).ok_or(format!(
        "matched = {matched}, kustomize's table says {want}"
    ))
}

#[test]
fn kustomize_tables_through_the_kustomization_target() {
    needs!(Shared, Kubectl);
    kustomize::require_kubectl();
    let mut cases = table("kustomize-set-image.json");
    cases.extend(table("kustomize-image-transformer.json"));
    let exceptions: BTreeMap<&str, &str> = EXCEPTIONS.iter().copied().collect();
    let (mut agreed, mut excepted) = (0, 0);
    let mut problems = Vec::new();
    for case in &cases {
        let id = case["id"].as_str().unwrap();
        let result = match case["kind"].as_str().unwrap() {
            "set_image" => set_image_case(case),
            "split" => split_case(case),
            "is_image_matched" => matched_case(case),
            _ => transformer_case(case),
        };
        match (result, exceptions.get(id)) {
            (Ok(()), None) => agreed += 1,
            (Err(_), Some(_)) => excepted += 1,
            (Ok(()), Some(why)) => problems.push(format!(
                "{id} agrees now; remove it from EXCEPTIONS ({why})"
            )),
            (Err(e), None) => problems.push(format!("{id}: {e}")),
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} cases:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
    assert_eq!(agreed + excepted, 82);
    println!(
        "kustomize tables: {agreed} of {} cases agree; {excepted} listed exceptions",
        cases.len()
    );
}
