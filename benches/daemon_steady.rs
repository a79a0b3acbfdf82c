//! The daemon tracking thousands of images on default settings: the intervals the budget
//! planner chooses, how late polls start, CPU and memory.
//!
//! Run with `cargo bench --bench daemon_steady`; it prints a table for `docs/benchmarks.md`.
//! It starts the real registry and `git daemon` on 127.0.0.1, pushes 20,000 repositories of
//! three tags each, writes a manifests repository with one kustomization per image (already at
//! the newest tag, so steady state writes nothing), and runs the release binary four times:
//! 5,000 and 20,000 images at the default 5-minute interval, first with no `rate_limit` (the
//! default for a registry that publishes no limit), then with `rate_limit = 2000`. The
//! measured window starts once every image has been polled (twice, when the first round
//! outlasts an interval and second polls wait for it). CPU time and memory are the daemon's
//! own, from /proc. `IMAGES=5000` runs the first size only;
//! `STEADY_SECS` sets the measured window (default 300 s: one interval); `RATE_LIMITS=2000`
//! runs only the tuned setting (`default` names the default one); `IMAGE_UPDATER_BIN` runs
//! another build of the binary (a copy, so that building goes on while a run lasts).

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use harness::git::GitServer;
use harness::{Auth, PushAuth, Registry, free_port, push_image, put_manifest};

const SIZES: [usize; 2] = [5_000, 20_000];
const INTERVAL_SECS: u64 = 300;
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

/// How many images have been checked successfully at least once.
async fn polled_images(port: u16) -> usize {
    let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await else {
        return 0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("image_updater_last_successful_check_timestamp_seconds{"))
        .count()
}

/// The poll lag histogram's cumulative buckets: (upper bound, count).
fn lag_buckets(metrics: &str) -> Vec<(f64, f64)> {
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with("image_updater_poll_lag_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The lag below which a fraction `q` of the polls between two readings of the histogram
/// started (the upper bound of the bucket where the fraction is reached).
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> String {
    let buckets: Vec<(f64, f64)> = after
        .iter()
        .map(|(bound, n)| {
            let earlier = before
                .iter()
                .find(|(b, _)| b == bound)
                .map_or(0.0, |(_, m)| *m);
            (*bound, n - earlier)
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    match buckets.iter().find(|(_, n)| *n >= q * total) {
        Some((b, _)) if b.is_infinite() => "> 3600 s".into(),
        Some((b, _)) => format!("≤ {b} s"),
        None => "-".into(),
    }
}

async fn metrics_text(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

struct Run {
    label: String,
    rows: Vec<(String, String)>,
}

async fn run(
    images: usize,
    rate_limit: Option<u32>,
    host: &str,
    base: &str,
    git: &GitServer,
    steady_secs: u64,
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let rate = rate_limit
        .map(|r| format!("rate_limit = {r}\n"))
        .unwrap_or_default();
    let mut config = format!(
        "[settings]\nlog_level = \"warn\"\n\n[registries.local]\nprefix = \"{host}\"\napi_url = \"{base}\"\ninsecure = true\n{rate}\n[repositories.manifests]\nurl = \"{}\"\n\n[environments.prod]\nbranch = \"deploy/prod\"\n",
        git.url("manifests")
    );
    for i in 0..images {
        config.push_str(&format!(
            "\n[images.app-{i}]\nimage = \"{host}/org/app-{i}\"\nconstraint = \"^1\"\n[[images.app-{i}.targets]]\nkind = \"kustomization\"\nfile = \"apps/app-{i}/kustomization.yaml\"\n"
        ));
    }
    let config_path = dir.path().join("updater.toml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port();
    let bin = std::env::var("IMAGE_UPDATER_BIN").unwrap_or_else(|_| BIN.to_string());
    let mut daemon = Command::new(bin)
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
    // The first round: every image polled once, as fast as the budget allows. Counted by the
    // images with a successful check (one series each), not by checks: an image polled early
    // may be polled again before the last one is polled the first time.
    while polled_images(port).await < images {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let first = started.elapsed();
    let (cpu_first, rss_first, _) = usage(pid);
    // When the first round outlasts an interval, second polls wait for its end and then
    // follow at the pace of the first ones: steady state begins once every image has been
    // polled twice (checks counted: near enough, as early images are polled again first).
    let waited = first > Duration::from_secs(INTERVAL_SECS);
    if waited {
        while metric(port, "image_updater_images_checked_total").await < 2.0 * images as f64 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let settled = started.elapsed();
    let (cpu0, _, _) = usage(pid);
    let checks0 = metric(port, "image_updater_images_checked_total").await;
    let lag0 = lag_buckets(&metrics_text(port).await);
    let t0 = Instant::now();
    let mut rss_max: f64 = 0.0;
    while t0.elapsed() < Duration::from_secs(steady_secs) {
        rss_max = rss_max.max(usage(pid).1);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let steady = t0.elapsed().as_secs_f64();
    let (cpu1, _, hwm) = usage(pid);
    let checks = metric(port, "image_updater_images_checked_total").await - checks0;
    let failed = metric(port, "image_updater_images_failed_total").await;
    let stretch = metric(port, "image_updater_registry_poll_interval_stretch_ratio").await;
    let interval = metric(port, "image_updater_poll_interval_seconds{image=\"app-0\"}").await;
    let lag1 = lag_buckets(&metrics_text(port).await);
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let cpu = cpu1 - cpu0;
    let label = format!(
        "{images} images, {}",
        rate_limit.map_or("default settings".to_string(), |r| format!(
            "rate_limit = {r}"
        ))
    );
    let warned = log
        .lines()
        .any(|l| l.contains("every interval is stretched"));
    Run {
        label,
        rows: vec![
            (
                "interval the planner chose".into(),
                format!(
                    "{:.0} s ({stretch:.2}x the configured 300 s{})",
                    interval,
                    if warned { "; warned in the log" } else { "" }
                ),
            ),
            (
                "first round (every image polled once, new: 4 requests each)".into(),
                format!("{:.0} s wall, {cpu_first:.1} s CPU", first.as_secs_f64()),
            ),
            (
                "second round over (every image polled twice)".into(),
                if waited {
                    format!("{:.0} s after the start", settled.as_secs_f64())
                } else {
                    "with the first: the round was shorter than an interval".into()
                },
            ),
            (
                format!("steady state: polls over {steady:.0} s"),
                format!("{checks:.0} ({:.1} per second)", checks / steady),
            ),
            (
                "steady state: poll lag p50 / p99".into(),
                format!(
                    "{} / {}",
                    quantile(&lag0, &lag1, 0.5),
                    quantile(&lag0, &lag1, 0.99)
                ),
            ),
            (
                "steady state: daemon CPU".into(),
                format!("{cpu:.1} s ({:.1}% of one core)", 100.0 * cpu / steady),
            ),
            (
                "resident memory after the first round".into(),
                format!("{rss_first:.0} MiB"),
            ),
            (
                "resident memory at steady state (max sampled every 2 s)".into(),
                format!("{rss_max:.0} MiB"),
            ),
            (
                "peak resident memory (VmHWM)".into(),
                format!("{hwm:.0} MiB"),
            ),
            ("failed polls".into(), format!("{:.0}", failed.max(0.0))),
        ],
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench asks benches to list themselves; this one has no sub-benches.
    }
    harness::require_registry();
    let sizes: Vec<usize> = match std::env::var("IMAGES") {
        Ok(n) => vec![n.parse().expect("IMAGES is a number")],
        Err(_) => SIZES.to_vec(),
    };
    let steady_secs: u64 = std::env::var("STEADY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(INTERVAL_SECS);
    let rate_limits: Vec<Option<u32>> = match std::env::var("RATE_LIMITS") {
        Ok(list) => list
            .split(',')
            .map(|r| match r.trim() {
                "default" => None,
                n => Some(n.parse().expect("RATE_LIMITS lists numbers or `default`")),
            })
            .collect(),
        Err(_) => vec![None, Some(2000)],
    };
    let most = sizes.iter().copied().max().unwrap_or_default();
    let registry = Registry::start(Auth::None).await;
    let base = registry.url();
    let host = registry.host();
    let t = Instant::now();
    futures_util::stream::iter(0..most)
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
    eprintln!("pushed {most} repositories in {:?}", t.elapsed());

    let git = GitServer::daemon();
    let files: Vec<(String, String)> = (0..most)
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

    for images in sizes {
        for &rate_limit in &rate_limits {
            let r = run(images, rate_limit, &host, &base, &git, steady_secs).await;
            println!("\n| measure ({}, 300 s interval) | value |", r.label);
            println!("|---|---|");
            for (k, v) in r.rows {
                println!("| {k} | {v} |");
            }
        }
    }
}
