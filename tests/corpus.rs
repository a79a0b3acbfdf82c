//! Write-back on real files: the 51 published Helm values files, kustomizations and manifests
//! in `../shared/yaml-corpus/` (sources and licence in its SOURCES.md), read where they are.
//!
//! `tests/corpus/cases.toml` holds one or more cases per file, written by us: a target as a
//! user writes it in `updater.toml`, the image and tag to write, and what must come out — the
//! exact lines that change (every other byte must stay), or the refusal. What we expect is
//! then checked by what the consumer renders, not by what we meant to change:
//! - a kustomization is built with real kustomize and must run exactly the written image;
//! - a Helm values file is rendered with real Helm (the published chart behind it, in
//!   `../shared/chart-corpus/`) before and after the edit: every container whose image the
//!   edit changed must render exactly the reference we wrote, at least one must, and every
//!   other container renders what it rendered before.
//!
//! Cases named after a defect class are its regression tests on the real file.

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use harness::helm::{self, Values};
use harness::kustomize;
use image_updater::config::{self, Target};
use image_updater::reference::Reference;
use image_updater::writeback::{Desired, edit};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// Under `../shared/yaml-corpus/`.
    file: String,
    /// What the case shows, in a few words (defect classes name their class).
    about: String,
    image: String,
    tag: String,
    digest: Option<String>,
    #[serde(default)]
    replaces: Vec<String>,
    /// The `[[images.app.targets]]` table, without `file`.
    target: toml::Table,
    /// A variant of the real file made at test time, for defects the published files do not
    /// show: `"crlf"` (its lines end in CRLF), or `{ after = N, text = "…" }` (lines inserted
    /// after line N). Expected line numbers are the variant's.
    derive: Option<Derive>,
    /// `[line, text]`: line number (1-based) in the original and its text after the edit.
    #[serde(default)]
    lines: Vec<(usize, String)>,
    /// `[after, text]`: a line inserted after this line of the original.
    #[serde(default)]
    insert: Vec<(usize, String)>,
    /// `[line]`: lines of the original removed by the edit.
    #[serde(default)]
    remove: Vec<usize>,
    /// The edit is refused with a message containing this.
    error: Option<String>,
    /// The file already says this: no edit.
    #[serde(default)]
    unchanged: bool,
    /// For a kustomization: the name its base resources run the image under (the `images:`
    /// entry's `name`); the built output must run exactly the written image.
    kustomize: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Derive {
    Crlf(String),
    Insert { after: usize, text: String },
}

#[derive(Debug, Deserialize)]
struct Cases {
    case: Vec<Case>,
}

fn corpus_dir() -> PathBuf {
    let dir = harness::shared::dir().join("yaml-corpus");
    assert!(
        dir.join("SOURCES.md").exists(),
        "{} not found: the corpus sits beside the checkout in ../shared",
        dir.display()
    );
    dir
}

/// The corpus files SOURCES.md lists.
fn listed_files(dir: &Path) -> BTreeSet<String> {
    let sources = std::fs::read_to_string(dir.join("SOURCES.md")).unwrap();
    sources
        .lines()
        .filter(|l| l.starts_with("| ") && l[2..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| {
            let cols: Vec<&str> = l.split('|').map(str::trim).collect();
            format!(
                "{}/{}",
                cols[2].replace('/', "__"),
                cols[3].trim_matches('`')
            )
        })
        .collect()
}

/// The target as `updater.toml` would give it, through the real config parser.
fn target_of(case: &Case) -> Target {
    let mut target = case.target.clone();
    target.insert("file".into(), case.file.clone().into());
    let mut image = toml::Table::new();
    image.insert("image".into(), case.image.clone().into());
    image.insert("replaces".into(), case.replaces.clone().into());
    image.insert("targets".into(), vec![toml::Value::Table(target)].into());
    let mut doc: toml::Table = toml::from_str(
        "[repositories.m]\nurl = \"https://git.example.com/m.git\"\n[environments.prod]\nrepository = \"m\"\nbranch = \"deploy/prod\"\n",
    )
    .unwrap();
    doc.insert(
        "images".into(),
        toml::Table::from_iter([("app".to_string(), toml::Value::Table(image))]).into(),
    );
    let text = toml::to_string(&doc).unwrap();
    let config = config::parse(Path::new("updater.toml"), &text)
        .unwrap_or_else(|d| panic!("{}: the case's target does not validate: {d:?}", case.file));
    config.images["app"].deployments[0].targets[0].clone()
}

fn desired_of(case: &Case) -> Desired {
    let r = Reference::parse(&case.image).unwrap();
    Desired {
        repository: r.repository(),
        written: r.familiar_repository(),
        tag: Some(case.tag.clone()),
        digest: case.digest.clone(),
        replaces: case
            .replaces
            .iter()
            .map(|x| Reference::parse(x).unwrap().repository())
            .collect(),
        chart: None,
    }
}

/// The original with the case's line changes applied, line endings kept.
fn expected_text(original: &str, case: &Case) -> String {
    let mut out = String::new();
    let ending = if original.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let lines: Vec<&str> = original.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        let eol = if line.ends_with("\r\n") {
            "\r\n"
        } else if line.ends_with('\n') {
            "\n"
        } else {
            ""
        };
        if !case.remove.contains(&n) {
            match case.lines.iter().find(|(l, _)| *l == n) {
                Some((_, text)) => {
                    out.push_str(text);
                    out.push_str(eol);
                }
                None => out.push_str(line),
            }
        }
        for (_, text) in case.insert.iter().filter(|(after, _)| *after == n) {
            if eol.is_empty() {
                out.push_str(ending);
            }
            out.push_str(text);
            out.push_str(ending);
        }
    }
    out
}

/// The same image written two ways (`nginx:1` and `docker.io/library/nginx:1`) compares equal.
fn canonical(image: &str) -> String {
    Reference::parse(image)
        .map(|r| r.to_string())
        .unwrap_or_else(|_| image.to_string())
}

/// Whether `rendered` deploys what `written` says: the same repository, and the digest when
/// one was written (a chart may render `repo@digest` without the tag, as bitnami's do, which
/// deploys the same content), else the tag and no digest.
fn deploys(rendered: &str, written: &str) -> bool {
    match (Reference::parse(rendered), Reference::parse(written)) {
        (Ok(r), Ok(w)) if r.repository() == w.repository() => match &w.digest {
            Some(d) => r.digest.as_ref() == Some(d) && (r.tag.is_none() || r.tag == w.tag),
            None => r.digest.is_none() && r.tag == w.tag,
        },
        _ => false,
    }
}

/// What real Helm renders from the original and the edited values: the containers the edit
/// changed must run exactly `written` (and one at least must), the rest what they ran before.
/// Returns how many containers were compared.
fn helm_renders(
    chart: &Path,
    original: &str,
    edited: &str,
    case: &Case,
    written: &str,
) -> Result<usize, String> {
    let tmp = tempfile::tempdir().unwrap();
    // The chart's own values.yaml, edited, replaces the chart's; any other values file (a
    // values-prod.yaml) is an overlay on it, as `helm template -f` merges it.
    let own = std::fs::read_to_string(chart.join("values.yaml")).unwrap_or_default();
    let is_own = std::fs::read_to_string(corpus_dir().join(&case.file)).unwrap_or_default() == own;
    let render = |name: &str, text: &str| {
        let file = tmp.path().join(name);
        std::fs::write(&file, text).unwrap();
        let values = if is_own {
            Values::Chart(&file)
        } else {
            Values::Overlay(&file)
        };
        helm::render(chart, values, &[]).map(|r| {
            r.into_iter()
                .map(|c| (c.place, canonical(&c.image)))
                .collect::<BTreeMap<_, _>>()
        })
    };
    let before = render("original.yaml", original)?;
    let after = render("edited.yaml", edited)?;
    let written = canonical(written);
    if before.keys().ne(after.keys()) {
        return Err(format!(
            "the edit changed which containers the chart renders: {:?} before, {:?} after",
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>()
        ));
    }
    let mut ours = 0;
    for (place, image) in &after {
        if deploys(image, &written) {
            ours += 1;
        } else if image != &before[place] {
            return Err(format!(
                "helm renders {image} at {place} (was {}), not the {written} we wrote",
                before[place]
            ));
        }
    }
    if ours == 0 {
        return Err(format!(
            "no container renders {written} after the edit; helm renders {:?}",
            after.values().collect::<BTreeSet<_>>()
        ));
    }
    Ok(after.len())
}

/// What a kustomization renders for an image that its base runs as `name`.
fn kustomize_renders(edited: &str, name: &str) -> Result<Vec<String>, String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = kustomize::stub_tree(tmp.path(), edited, &format!("{name}:base-tag"));
    let rendered = kustomize::build(&dir)?;
    Ok(kustomize::images(&rendered))
}

/// What a case was checked by: containers compared in Helm renders, and kustomize builds.
#[derive(Default)]
struct Rendered {
    helm_cases: usize,
    containers: usize,
    kustomize_cases: usize,
}

fn check(
    dir: &Path,
    case: &Case,
    charts: &BTreeMap<String, PathBuf>,
    rendered: &mut Rendered,
) -> Result<(), String> {
    let path = dir.join(&case.file);
    let mut original = std::fs::read_to_string(&path).map_err(|e| format!("{e}"))?;
    match &case.derive {
        None => {}
        Some(Derive::Crlf(how)) => {
            assert_eq!(how, "crlf", "{}: unknown derive", case.file);
            original = original.replace('\n', "\r\n");
        }
        Some(Derive::Insert { after, text }) => {
            let at: usize = original
                .split_inclusive('\n')
                .take(*after)
                .map(str::len)
                .sum();
            original.insert_str(at, text);
        }
    }
    let target = target_of(case);
    let desired = desired_of(case);
    let result = edit(&target, &original, &desired);
    if let Some(want) = &case.error {
        return match result {
            Err(e) if e.message.contains(want.as_str()) => Ok(()),
            Err(e) => Err(format!("refused, but with: {}", e.message)),
            Ok(_) => Err(format!("edited, but should refuse with {want:?}")),
        };
    }
    let edited = match result {
        Ok(Some(e)) => e.new_text,
        Ok(None) if case.unchanged => original.clone(),
        Ok(None) => return Err("no edit".into()),
        Err(e) => return Err(format!("refused: {}", e.message)),
    };
    if case.unchanged && edited != original {
        return Err("edited a file that already says this".into());
    }
    let expected = expected_text(&original, case);
    if edited != expected {
        let diff = similar::TextDiff::from_lines(&expected, &edited);
        return Err(format!(
            "not the expected bytes (- expected, + written):\n{}",
            diff.unified_diff().context_radius(1)
        ));
    }
    let written = format!("{}{}", desired.written, {
        let mut s = format!(":{}", case.tag);
        if let Some(d) = &case.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    });
    if case.target.get("kind").and_then(|k| k.as_str()) == Some("helm") {
        let folder = Path::new(&case.file).parent().unwrap().to_string_lossy();
        let chart = charts.get(folder.as_ref()).ok_or_else(|| {
            format!("no chart in ../shared/chart-corpus renders {folder}: a Helm case needs one")
        })?;
        rendered.containers += helm_renders(chart, &original, &edited, case, &written)?;
        rendered.helm_cases += 1;
    }
    if let Some(name) = &case.kustomize {
        let images = kustomize_renders(&edited, name)?;
        if images.is_empty() || images.iter().any(|i| i != &written) {
            return Err(format!(
                "kustomize renders {images:?}, not {written} everywhere"
            ));
        }
        rendered.kustomize_cases += 1;
    }
    Ok(())
}

#[test]
fn every_corpus_file_is_updated_exactly_or_refused_clearly() {
    needs!(Shared, Kubectl, Helm);
    kustomize::require_kubectl();
    let charts = helm::charts_by_values_dir();
    let dir = corpus_dir();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/cases.toml"),
    )
    .unwrap();
    let cases: Cases =
        toml::from_str(&text).unwrap_or_else(|e| panic!("tests/corpus/cases.toml: {e}"));
    let listed = listed_files(&dir);
    let covered: BTreeSet<String> = cases.case.iter().map(|c| c.file.clone()).collect();
    let missing: Vec<&String> = listed.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "corpus files without a case: {missing:?}"
    );
    let unknown: Vec<&String> = covered.difference(&listed).collect();
    assert!(
        unknown.is_empty(),
        "cases for files SOURCES.md does not list: {unknown:?}"
    );
    let mut failures = Vec::new();
    let mut rendered = Rendered::default();
    let mut refused = 0;
    for case in &cases.case {
        match check(&dir, case, &charts, &mut rendered) {
            Ok(()) => refused += usize::from(case.error.is_some()),
            Err(e) => failures.push(format!("{} ({}): {e}", case.file, case.about)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.case.len(),
        failures.join("\n\n")
    );
    println!(
        "{} cases on {} corpus files passed: {} rendered by real Helm ({} containers compared), {} built by real kustomize, {refused} refusals",
        cases.case.len(),
        listed.len(),
        rendered.helm_cases,
        rendered.containers,
        rendered.kustomize_cases,
    );
}
