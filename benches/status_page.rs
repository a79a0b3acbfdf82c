//! The status page's server time at 5,000 images in three environments (15,000 rows) on
//! default settings (`[ui]` with nothing set: 100 images a page).
//!
//! Run with `cargo bench --bench status_page`; it prints a table for `docs/benchmarks.md`.
//! In-process: the daemon's own router answers each request, from a status store filled as a
//! daemon's would be after its first round (every image checked, a third of them waiting, a
//! few held or failing, each with five writes remembered), and the time is from the request
//! to the last byte of the body. `IMAGES` sets the number of images.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use image_updater::daemon::Shared;
use image_updater::daemon::control::ControlFile;
use image_updater::daemon::http::ui::Ui;
use image_updater::state::{Holds, ManualHold, RevertHold};
use tower::ServiceExt;

const RUNS: usize = 200;

fn config(images: usize) -> String {
    let mut text = String::from(
        "[registries.ghcr]\nprefix = \"ghcr.io\"\n\n[repositories.manifests]\nurl = \"https://git.example.com/org/manifests.git\"\n\n[environments.dev]\nbranch = \"deploy/dev\"\n[environments.staging]\nbranch = \"deploy/staging\"\n[environments.prod]\nbranch = \"deploy/prod\"\n\n[ui]\n",
    );
    for i in 0..images {
        text.push_str(&format!(
            "\n[images.app-{i}]\nimage = \"ghcr.io/org/app-{i}\"\n[[images.app-{i}.targets]]\nkind = \"kustomization\"\nfile = \"apps/app-{i}/kustomization.yaml\"\n"
        ));
    }
    text
}

fn fill(shared: &Shared, images: usize) {
    let mut holds = Holds::default();
    for i in 0..images {
        let alias = format!("app-{i}");
        for env in ["dev", "staging", "prod"] {
            shared.status.update(&alias, env, |s| {
                s.last_check = Some(jiff::Timestamp::now());
                s.current = Some(format!("v1.{i}.0"));
                s.written = s.current.clone();
                s.written_digest = Some(format!("sha256:{:064x}", i));
                s.candidate = Some(format!("v1.{}.0", i + usize::from(i % 3 == 0)));
                if i % 3 == 0 {
                    s.waiting = Some(format!(
                        "v1.{}.0: too young: seen 10m ago, min_age 1h",
                        i + 1
                    ));
                }
                if i % 97 == 0 {
                    s.last_error = Some("registry answered 503 after 3 retries".into());
                }
                if i % 89 == 0 {
                    s.held = Some(Box::new(RevertHold {
                        value: format!("v1.{}.0", i + 1),
                        tag: format!("v1.{}.0", i + 1),
                        found: format!("v1.{i}.0"),
                        since: "2026-12-01T10:00:00Z".into(),
                        request: None,
                    }));
                }
                for w in 0..5 {
                    s.wrote(
                        format!("v1.{w}.0 -> v1.{}.0", w + 1),
                        format!("{:040x}", i * 5 + w),
                        None,
                    );
                }
            });
        }
        if i % 50 == 0 {
            holds.hold(
                &alias,
                "prod",
                ManualHold {
                    since: "2026-12-01T10:00:00Z".into(),
                    until: None,
                    reason: Some("release freeze for the audit".into()),
                    by: Some("ana".into()),
                },
            );
        }
    }
    holds.write(&shared.state_dir).unwrap();
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i]
}

fn main() {
    let images: usize = std::env::var("IMAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000);
    let dir = tempfile::tempdir().unwrap();
    let config = image_updater::config::parse(Path::new("updater.toml"), &config(images))
        .unwrap_or_else(|d| panic!("{d:?}"));
    let shared = Shared::open(dir.path().to_path_buf());
    fill(&shared, images);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (polls, _rx) = tokio::sync::mpsc::channel(16);
    let control = ControlFile::create(dir.path(), "127.0.0.1:8081".parse().unwrap()).unwrap();
    let (_tx, config_rx) = tokio::sync::watch::channel(Arc::new(config));
    let ui = Arc::new(Ui::new(config_rx, shared, control, polls));
    let router = ui.router();
    let mid = images / 2;
    let paths = [
        "/".to_string(),
        format!("/?page={}", images / 100),
        "/?state=waiting".into(),
        "/?state=held&env=prod".into(),
        format!("/?image=app-{mid}"),
        format!("/image/app-{mid}"),
        "/api/v1/status".into(),
        format!("/api/v1/images/app-{mid}"),
        "/ui/changes".into(),
    ];
    println!("| request | p50 | p99 | max | body |");
    println!("|---|---|---|---|---|");
    for path in paths {
        let mut times = Vec::with_capacity(RUNS);
        let mut size = 0;
        for _ in 0..RUNS {
            let request = Request::get(&path).body(Body::empty()).unwrap();
            let started = Instant::now();
            let body = runtime.block_on(async {
                let response = router.clone().oneshot(request).await.unwrap();
                assert!(
                    response.status().is_success(),
                    "{path}: {}",
                    response.status()
                );
                axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap()
            });
            times.push(started.elapsed());
            size = body.len();
        }
        times.sort();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| `GET {path}` | {} | {} | {} | {} KiB |",
            ms(quantile(&times, 0.5)),
            ms(quantile(&times, 0.99)),
            ms(*times.last().unwrap()),
            size / 1024
        );
    }
}
