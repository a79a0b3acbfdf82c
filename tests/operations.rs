//! The operations files shipped in `deploy/`: the Prometheus alert rules pass promtool's own
//! checks and unit tests, and they and the Grafana dashboard query only series the real
//! daemon exposes, whose /metrics passes `promtool check metrics`.

mod harness;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use harness::world::World;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");

/// Runs `command` with `stdin` written to it, and waits for it.
fn fed(command: &mut Command, stdin: &str) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn promtool(args: &[&str], dir: &Path, stdin: Option<&str>) -> (bool, String) {
    let out = fed(
        Command::new("promtool").args(args).current_dir(dir),
        stdin.unwrap_or_default(),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_alert_rules_pass_promtools_checks_and_unit_tests() {
    needs!(Promtool);
    let dir = Path::new(RULES);
    let (ok, out) = promtool(&["check", "rules", "image-updater.rules.yml"], dir, None);
    assert!(ok, "{out}");
    let (ok, out) = promtool(
        &["test", "rules", "image-updater.rules.test.yml"],
        dir,
        None,
    );
    assert!(ok, "{out}");
}

/// The metric families a shipped file queries, by name (`up` is Prometheus's own).
fn families_in(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(DEPLOY).join(file)).unwrap();
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("image_updater_"))
        .map(|w| w.strip_suffix("_bucket").unwrap_or(w).to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The samples in `text`, as counted by the Prometheus client's OpenMetrics parser, which
/// refuses anything the format does not allow.
fn parse_openmetrics(text: &str) -> usize {
    let script = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\nprint(sum(len(f.samples) for f in parse(sys.stdin.read())))\n";
    let out = fed(
        Command::new(harness::need::PYTHON).args(["-c", script]),
        text,
    );
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_metrics_pass_promtool_and_carry_every_series_rules_and_dashboard_use() {
    needs!(Promtool, OpenMetricsParser, Registry, Lighttpd);
    let overlay = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n  - name: REGISTRY/org/app\n    newTag: v1.0.0\n";
    let world = World::new(&[("dev/kustomization.yaml", overlay)], &["deploy/dev"]).await;
    world.push("org/app", "v1.1.0").await;
    let host = world.host();
    world.write_config(&format!(
        "{}\n[images.app]\nimage = \"{host}/org/app\"\n[[images.app.targets]]\nkind = \"kustomization\"\nfile = \"dev/kustomization.yaml\"\n\n[images.gone]\nimage = \"{host}/org/gone\"\n[[images.gone.targets]]\nkind = \"kustomization\"\nfile = \"dev/kustomization.yaml\"\n",
        world.base_config(&["dev"])
    ));
    let daemon = world.start();
    world
        .wait_for(
            "deploy/dev",
            "dev/kustomization.yaml",
            "newTag: v1.1.0",
            &daemon,
        )
        .await;
    daemon
        .wait_metric("image_updater_images_failed_total", 1.0)
        .await;
    let (_, metrics) = daemon.get("/metrics").await;
    let (ok, out) = promtool(&["check", "metrics"], Path::new(RULES), Some(&metrics));
    assert!(ok, "promtool check metrics:\n{out}\n{metrics}");
    // A scraper that asks for OpenMetrics gets it, and it passes a strict parser with the
    // same samples as the classic text.
    let openmetrics = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/metrics", daemon.port))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        openmetrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{:?}",
        openmetrics.headers()
    );
    let openmetrics = openmetrics.text().await.unwrap();
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    let parsed = parse_openmetrics(&openmetrics);
    let classic_samples = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    assert_eq!(parsed, classic_samples, "{openmetrics}");
    for file in [
        "prometheus/image-updater.rules.yml",
        "grafana/image-updater.json",
    ] {
        let families = families_in(file);
        assert!(families.len() >= 8, "{file}: {families:?}");
        for family in families {
            assert!(
                metrics.contains(&format!("# TYPE {family} ")),
                "{file} uses {family}, which /metrics does not expose:\n{metrics}"
            );
        }
    }
}
