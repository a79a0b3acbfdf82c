//! The daemon tracking 5,000 images: memory and CPU at steady state.
//!
//! Run with `cargo bench --bench daemon_steady`; it prints a table for `docs/benchmarks.md`.
//! It starts the real registry and `git daemon` on 127.0.0.1, pushes 5,000 repositories of
//! three tags each, writes a manifests repository with one kustomization per image (already at
//! the newest tag, so steady state writes nothing), and runs the release binary with every
//! image on a 60-second interval. The daemon's CPU time and memory are read from /proc.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use harness::git::GitServer;
use harness::{Auth, PushAuth, Registry, free_port, push_image, put_manifest};

const IMAGES: usize = 5_000;
const INTERVAL_SECS: u64 = 60;
const STEADY_SECS: u64 = 180;
const BIN: &str = env!("CARGO_BIN_EXE_image-updater");

/// (utime + stime in seconds, VmRSS in MiB, VmHWM in MiB) of `pid`.
fn usage(pid: u32) -> (f64, f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let hz = 100.0; // USER_HZ on Linux
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    (ticks / hz, kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

async fn metric(port: u16, name: &str) -> f64 {
    let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0.0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_cycles(port: u16, n: f64) -> Instant {
    loop {
        if metric(port, "image_updater_cycles_total").await >= n {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::main]
async fn main() {
    let registry = Registry::start(Auth::None).await;
    let base = registry.url();
    let host = registry.host();
    let t = Instant::now();
    futures_util::stream::iter(0..IMAGES)
        .map(|i| {
            let base = base.clone();
            async move {
                let repo = format!("org/app-{i}");
                push_image(
                    &base,
                    &PushAuth::None,
                    &repo,
                    Some("v1.0.0"),
                    "2026-01-01T00:00:00Z",
                    "linux/amd64",
                )
                .await;
                let manifest = reqwest::Client::new()
                    .get(format!("{base}/v2/{repo}/manifests/v1.0.0"))
                    .header("accept", "application/vnd.oci.image.manifest.v1+json")
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                for tag in ["v1.1.0", "v1.2.0"] {
                    put_manifest(
                        &base,
                        &PushAuth::None,
                        &repo,
                        tag,
                        "application/vnd.oci.image.manifest.v1+json",
                        &manifest,
                    )
                    .await;
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    eprintln!("pushed {IMAGES} repositories in {:?}", t.elapsed());

    let git = GitServer::daemon();
    let files: Vec<(String, String)> = (0..IMAGES)
        .map(|i| {
            (
                format!("apps/app-{i}/kustomization.yaml"),
                format!("resources:\n  - deployment.yaml\nimages:\n  - name: {host}/org/app-{i}\n    newTag: v1.2.0\n"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    git.create("manifests", &refs, &["deploy/prod"]);

    let dir = tempfile::tempdir().unwrap();
    let mut config = format!(
        "[settings]\ninterval = \"{INTERVAL_SECS}s\"\nlog_level = \"warn\"\n\n[registries.local]\nprefix = \"{host}\"\napi_url = \"{base}\"\ninsecure = true\nrate_limit = 2000\n\n[repositories.manifests]\nurl = \"{}\"\n\n[environments.prod]\nbranch = \"deploy/prod\"\n",
        git.url("manifests")
    );
    for i in 0..IMAGES {
        config.push_str(&format!(
            "\n[images.app-{i}]\nimage = \"{host}/org/app-{i}\"\nconstraint = \"^1\"\n[[images.app-{i}.targets]]\nkind = \"kustomization\"\nfile = \"apps/app-{i}/kustomization.yaml\"\n"
        ));
    }
    let config_path = dir.path().join("updater.toml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port();
    let mut daemon = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config_path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let pid = daemon.id();
    let started = Instant::now();
    let first = wait_cycles(port, 1.0).await;
    let (cpu_first, rss_first, _) = usage(pid);
    // Every image was polled once; from here on polls are spread over the interval.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (cpu0, _, _) = usage(pid);
    let checks0 = metric(port, "image_updater_images_checked_total").await;
    let t0 = Instant::now();
    let mut rss_max: f64 = 0.0;
    while t0.elapsed() < Duration::from_secs(STEADY_SECS) {
        rss_max = rss_max.max(usage(pid).1);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let steady = t0.elapsed().as_secs_f64();
    let (cpu1, _, hwm) = usage(pid);
    let checks = metric(port, "image_updater_images_checked_total").await - checks0;
    let failed = metric(port, "image_updater_images_failed_total").await;
    let _ = daemon.kill();
    let _ = daemon.wait();

    let cpu = cpu1 - cpu0;
    println!("| measure ({IMAGES} images, {INTERVAL_SECS} s interval) | value |");
    println!("|---|---|");
    println!(
        "| first cycle (cold cache: every manifest and config fetched) | {:.1} s wall, {cpu_first:.1} s CPU |",
        first.duration_since(started).as_secs_f64()
    );
    println!(
        "| steady state: polls over {steady:.0} s | {checks:.0} ({:.0} per second) |",
        checks / steady
    );
    println!(
        "| steady state: daemon CPU | {cpu:.1} s ({:.1}% of one core) |",
        100.0 * cpu / steady
    );
    println!(
        "| steady state: CPU per poll | {:.2} ms |",
        1000.0 * cpu / checks.max(1.0)
    );
    println!("| resident memory after the first cycle | {rss_first:.0} MiB |");
    println!("| resident memory at steady state (max sampled every 2 s) | {rss_max:.0} MiB |");
    println!("| peak resident memory (VmHWM) | {hwm:.0} MiB |");
    println!("| failed polls | {failed:.0} |");
}
