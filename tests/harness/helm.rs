//! Real Helm: what a chart of `../shared/chart-corpus/` renders from a values file, by Helm
//! v4's own Go SDK (the `helm-python-sdk` wheel from PyPI, `pip install helm-python-sdk`)
//! through the corpus's `render.py`. No `helm` binary, network or cluster is involved.
//!
//! A chart's image is whatever its templates make of several keys (registry, repository, tag,
//! digest, a global override, a `default` in the template): the only way to know what a values
//! edit deploys is to render it. The corpus test does that before and after every Helm edit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The Python that has `helm_python`: `IMAGE_UPDATER_HELM_PYTHON` (a virtualenv's python,
/// say), or `python3` on the PATH.
pub fn python() -> String {
    std::env::var("IMAGE_UPDATER_HELM_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// `../shared/chart-corpus/`.
pub fn corpus() -> PathBuf {
    super::shared::dir().join("chart-corpus")
}

/// The chart directories of the corpus by the `../yaml-corpus/` folder their values files are
/// in, read from the corpus's SOURCES.md (`| corpus dir | repository | chart path | …`): the
/// yaml-corpus keeps a file at `OWNER__NAME/CHART_PATH/…`.
pub fn charts_by_values_dir() -> BTreeMap<String, PathBuf> {
    let root = corpus();
    let sources = std::fs::read_to_string(root.join("SOURCES.md")).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the chart corpus sits beside the checkout in ../shared",
            root.display()
        )
    });
    let mut charts = BTreeMap::new();
    for line in sources.lines().filter(|l| l.starts_with("| `")) {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let (dir, repository, path) = (cols[1], cols[2], cols[3]);
        let dir = dir.trim_matches('`');
        // "`helm-chart` (chart `onlineboutique`)": the path is the first quoted part.
        let path = path.split('`').nth(1).unwrap_or(path);
        charts.insert(
            format!("{}/{path}", repository.replace('/', "__")),
            root.join(dir),
        );
    }
    charts
}

/// One container (or, with custom resources, one `image:` field) of a render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Where it is: template, kind, object name, container list and field.
    pub place: String,
    pub image: String,
}

/// How a values file reaches the chart.
pub enum Values<'a> {
    /// It is the chart's own values.yaml, edited: it replaces the chart's (`--chart-values`).
    Chart(&'a Path),
    /// It is an overlay (a `values-prod.yaml`): merged over the chart's own, as `-f` does.
    Overlay(&'a Path),
}

/// Renders `chart` with `values` and `sets` (`--set` expressions) and lists every container's
/// image and every `image:` field of a custom resource (kube-prometheus-stack's Prometheus).
pub fn render(chart: &Path, values: Values, sets: &[&str]) -> Result<Vec<Rendered>, String> {
    let mut command = Command::new(python());
    command
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(corpus().join("render.py"))
        .arg(chart);
    match values {
        Values::Chart(file) => command.arg("--chart-values").arg(file),
        Values::Overlay(file) => command.arg(file),
    };
    for set in sets {
        command.args(["--set", set]);
    }
    command.args(["--json", "--cr-images"]);
    let out = command.output().map_err(|e| format!("{}: {e}", python()))?;
    if !out.status.success() {
        return Err(format!(
            "helm refused the values: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let records: Vec<Value> = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("render.py printed no JSON list: {e}"))?;
    // A place is named by its template, kind, container and field, not by the object's name:
    // charts name test pods with random suffixes (`randAlphaNum`). Objects a template renders
    // more than once are told apart by their order, which is the render's.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    Ok(records
        .iter()
        .map(|r| {
            let place = ["template", "kind", "container", "type", "field"]
                .iter()
                .map(|k| r[*k].as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" ");
            let n = seen.entry(place.clone()).or_default();
            *n += 1;
            Rendered {
                place: format!("{place} #{n}"),
                image: r["image"].as_str().unwrap_or_default().to_string(),
            }
        })
        .collect())
}
