//! From a registry push to the commit on the environment branch, with webhooks, on default
//! settings, in one repository of 10,000 files.
//!
//! Run with `cargo bench --bench push_to_commit`; it prints the tables for
//! `docs/benchmarks.md`. It starts the real registry and `git http-backend` behind lighttpd
//! on 127.0.0.1, pushes `v1.0.0` of 5,000 repositories, and makes a manifests repository of
//! 10,000 files (a kustomization and a deployment per application, the kustomizations at
//! `v1.0.0`). For each size (1, 500 and 5,000 configured images; `IMAGES=500` for one), the
//! release binary runs on default settings with `[webhooks]`, and once its first round is
//! over (every image polled once):
//!
//! - **one push** at a time (`SAMPLES`, default 10): a new tag is pushed and, the moment the
//!   registry has accepted it, its push event is delivered to `POST /webhook`, signed, as the
//!   registry's notifications would; the time runs until the branch's ref on the git server
//!   (read from the server's repository every 2 ms) has moved;
//! - **a burst** of 200 pushes to different images (at 500 and 5,000): the tags are pushed
//!   first, then the 200 events delivered within a second; the time runs from the first
//!   delivery until the daemon has pushed all 200 updates (its `image_updater_images_updated_total`,
//!   counted after each push to the server), and the commits are counted on the server.
//!
//! Per event: the git processes the daemon spawned (a `git` on its PATH that counts itself)
//! and the registry requests it made (`image_updater_registry_requests_total`). The events
//! carry the pushed digest, as distribution's notifications do.
//!
//! With `POLLING=N` it runs without `[webhooks]` instead: once the first round is over, `N`
//! images get a new tag at once, and each is timed until its next poll has put it on the
//! server's branch (read with `git show` each second). `RATE_LIMIT=N` sets the registry's
//! `rate_limit`, for comparison with the default.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use harness::webhook::{SECRET, deliver_signed, pushed_event};
use harness::world::{Daemon, World};
use harness::{PushAuth, push_image};

const MOST: usize = 5_000;
const BURST: usize = 200;
/// The branch's head on the server, read from its repository's files (no process spawned).
fn server_head(bare: &Path, branch: &str) -> String {
    if let Ok(text) = std::fs::read_to_string(bare.join("refs/heads").join(branch)) {
        return text.trim().to_string();
    }
    let packed = std::fs::read_to_string(bare.join("packed-refs")).unwrap_or_default();
    let want = format!("refs/heads/{branch}");
    packed
        .lines()
        .find(|l| l.ends_with(&want))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

fn commits(bare: &Path, branch: &str) -> usize {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(bare)
        .args(["rev-list", "--count", branch])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A directory holding a `git` that appends a line to `count` and runs the real one.
fn counting_git(dir: &Path, count: &Path) -> PathBuf {
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("git");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho x >> '{}'\nexec '{}' \"$@\"\n",
            count.display(),
            real.trim()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    bin
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

async fn polled_images(daemon: &Daemon) -> usize {
    let (_, text) = daemon.get("/metrics").await;
    text.lines()
        .filter(|l| l.starts_with("image_updater_last_successful_check_timestamp_seconds{"))
        .count()
}

struct Sized<'a> {
    world: &'a World,
    images: usize,
    daemon: Daemon,
    hook: String,
    git_count: PathBuf,
    bare: PathBuf,
}

async fn start<'a>(world: &'a World, images: usize, webhooks: bool) -> Sized<'a> {
    let host = world.host();
    let dir = world.dir.path().join(format!("run-{images}"));
    std::fs::create_dir_all(&dir).unwrap();
    let hook_port = harness::free_port();
    std::fs::write(dir.join("webhook-secret"), SECRET).unwrap();
    let mut config = format!(
        "[registries.local]\nprefix = \"{host}\"\napi_url = \"{}\"\ninsecure = true\n{}\n[repositories.manifests]\nurl = \"{}\"\ncredentials = \"file:{}\"\nauthor = \"image-updater <bot@example.com>\"\n\n[environments.prod]\nbranch = \"deploy/prod\"\n\n",
        world.registry.url(),
        // RATE_LIMIT=N: the registry's rate set, for comparison with the default.
        std::env::var("RATE_LIMIT")
            .map(|n| format!(
                "rate_limit = {}\n",
                n.parse::<f64>().expect("RATE_LIMIT is a number")
            ))
            .unwrap_or_default(),
        world.git.url("manifests"),
        world.dir.path().join("git-credentials").display(),
    );
    if webhooks {
        config.push_str(&format!(
            "\n[webhooks]\nlisten = \"127.0.0.1:{hook_port}\"\nsecret = \"file:{}\"\n",
            dir.join("webhook-secret").display()
        ));
    }
    for i in 0..images {
        config.push_str(&format!(
            "\n[images.app-{i}]\nimage = \"{host}/org/app-{i}\"\n[[images.app-{i}.targets]]\nkind = \"kustomization\"\nfile = \"apps/app-{i}/kustomization.yaml\"\n"
        ));
    }
    let config_path = dir.join("updater.toml");
    std::fs::write(&config_path, config).unwrap();
    let git_count = dir.join("git-processes");
    let bin = counting_git(&dir, &git_count);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // A fresh state dir per size: each starts cold, as a new deployment would.
    let _ = std::fs::remove_dir_all(world.state_dir());
    let daemon = world.start_with_env(&config_path, &[("PATH", &path)]);
    daemon.wait_http().await;
    let started = Instant::now();
    while polled_images(&daemon).await < images {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the first round's write (none: the branch already holds v1.0.0) and saves settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("{images} images: first round {:?}", started.elapsed());
    Sized {
        world,
        images,
        daemon,
        hook: format!("http://127.0.0.1:{hook_port}/webhook"),
        git_count,
        bare: world.git.path("manifests"),
    }
}

async fn deliver(client: &reqwest::Client, url: &str, body: String) {
    assert_eq!(deliver_signed(client, url, &body).await, 202);
}

/// A new tag of `app-{i}`, pushed; returns its digest when the registry has accepted it.
async fn push(world: &World, i: usize, tag: &str) -> String {
    push_image(
        &world.registry.url(),
        &PushAuth::None,
        &format!("org/app-{i}"),
        Some(tag),
        "2026-01-01T00:00:00Z",
        "linux/amd64",
    )
    .await
}

async fn single(run: &Sized<'_>, samples: usize, round: usize) -> Vec<(String, String)> {
    let client = reqwest::Client::new();
    let host = run.world.host();
    let mut times = Vec::new();
    let git0 = lines(&run.git_count);
    let req0 = run
        .daemon
        .metric("image_updater_registry_requests_total")
        .await;
    let commits0 = commits(&run.bare, "deploy/prod");
    for s in 0..samples {
        let i = (s * 7919 + round) % run.images;
        // Each round's tags rank above every earlier round's (the sizes share the registry
        // and the repository), and a round's burst above its single pushes.
        let tag = format!("v{}.{s}.0", 100 * (round + 1));
        let digest = push(run.world, i, &tag).await;
        let before = server_head(&run.bare, "deploy/prod");
        let t0 = Instant::now();
        deliver(
            &client,
            &run.hook,
            pushed_event(&host, &format!("org/app-{i}"), &tag, &digest),
        )
        .await;
        while server_head(&run.bare, "deploy/prod") == before {
            assert!(
                t0.elapsed() < Duration::from_secs(600),
                "never committed:\n{}",
                run.daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(t0.elapsed());
        let file = run.world.git.show(
            "manifests",
            "deploy/prod",
            &format!("apps/app-{i}/kustomization.yaml"),
        );
        assert!(file.contains(&tag), "the commit lacks {tag}:\n{file}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let git = lines(&run.git_count) - git0;
    let requests = run
        .daemon
        .metric("image_updater_registry_requests_total")
        .await
        - req0;
    let made = commits(&run.bare, "deploy/prod") - commits0;
    times.sort();
    vec![
        ("pushes, one at a time".into(), samples.to_string()),
        (
            "push to commit on the server: p50 / p99 / max".into(),
            format!(
                "{} / {} / {}",
                ms(quantile(&times, 0.5)),
                ms(quantile(&times, 0.99)),
                ms(*times.last().unwrap())
            ),
        ),
        ("commits".into(), made.to_string()),
        (
            "git processes per event".into(),
            format!("{:.1}", git as f64 / samples as f64),
        ),
        (
            "registry requests per event".into(),
            format!("{:.1}", requests / samples as f64),
        ),
    ]
}

async fn burst(run: &Sized<'_>, round: usize) -> Vec<(String, String)> {
    let host = run.world.host();
    let tag = format!("v{}.0.0", 100 * (round + 1) + 50);
    let chosen: Vec<usize> = (0..BURST).map(|k| (k * run.images) / BURST).collect();
    let pushed: Vec<(usize, String)> = futures_util::stream::iter(chosen.clone())
        .map(|i| {
            let tag = tag.clone();
            async move { (i, push(run.world, i, &tag).await) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let git0 = lines(&run.git_count);
    let req0 = run
        .daemon
        .metric("image_updater_registry_requests_total")
        .await;
    let updates0 = run
        .daemon
        .metric("image_updater_images_updated_total")
        .await;
    let commits0 = commits(&run.bare, "deploy/prod");
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    futures_util::stream::iter(pushed)
        .map(|(i, digest)| {
            let body = pushed_event(&host, &format!("org/app-{i}"), &tag, &digest);
            let (client, hook) = (&client, &run.hook);
            async move { deliver(client, hook, body).await }
        })
        .buffer_unordered(20)
        .collect::<Vec<()>>()
        .await;
    let delivered = t0.elapsed();
    while run
        .daemon
        .metric("image_updater_images_updated_total")
        .await
        - updates0
        < BURST as f64
    {
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "the burst never landed:\n{}",
            run.daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let landed = t0.elapsed();
    for &i in &chosen {
        let file = run.world.git.show(
            "manifests",
            "deploy/prod",
            &format!("apps/app-{i}/kustomization.yaml"),
        );
        assert!(file.contains(&tag), "app-{i} lacks {tag}");
    }
    let git = lines(&run.git_count) - git0;
    let requests = run
        .daemon
        .metric("image_updater_registry_requests_total")
        .await
        - req0;
    vec![
        ("burst: events delivered within".into(), ms(delivered)),
        ("burst: all 200 on the server after".into(), ms(landed)),
        (
            "burst: commits".into(),
            (commits(&run.bare, "deploy/prod") - commits0).to_string(),
        ),
        (
            "burst: git processes per event".into(),
            format!("{:.2}", git as f64 / BURST as f64),
        ),
        (
            "burst: registry requests per event".into(),
            format!("{:.1}", requests / BURST as f64),
        ),
    ]
}

/// Without webhooks: `n` images get a new tag at once, and each is timed until its poll has
/// put it on the server's branch.
async fn polled(run: &Sized<'_>, n: usize, round: usize) -> Vec<(String, String)> {
    let tag = format!("v{}.0.0", 100 * (round + 1) + 80);
    let chosen: Vec<usize> = (0..n).map(|k| (k * run.images) / n).collect();
    let commits0 = commits(&run.bare, "deploy/prod");
    let mut pending: Vec<(usize, Instant)> = Vec::new();
    for &i in &chosen {
        push(run.world, i, &tag).await;
        pending.push((i, Instant::now()));
    }
    let mut times = Vec::new();
    let started = Instant::now();
    while !pending.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "{} pushes never landed",
            pending.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        pending.retain(|(i, at)| {
            let file = run.world.git.show(
                "manifests",
                "deploy/prod",
                &format!("apps/app-{i}/kustomization.yaml"),
            );
            let landed = file.contains(&tag);
            if landed {
                times.push(at.elapsed());
            }
            !landed
        });
    }
    times.sort();
    let s = |d: Duration| format!("{:.0} s", d.as_secs_f64());
    vec![
        (
            format!("no webhooks: {n} pushes, push to commit on the server, p50 / p99 / max"),
            format!(
                "{} / {} / {}",
                s(quantile(&times, 0.5)),
                s(quantile(&times, 0.99)),
                s(*times.last().unwrap())
            ),
        ),
        ("no webhooks: min".into(), s(times[0])),
        (
            "no webhooks: commits".into(),
            (commits(&run.bare, "deploy/prod") - commits0).to_string(),
        ),
    ]
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<usize> = match std::env::var("IMAGES") {
        Ok(n) => n
            .split(',')
            .map(|s| s.trim().parse().expect("IMAGES lists numbers"))
            .collect(),
        Err(_) => vec![1, 500, MOST],
    };
    let samples: usize = std::env::var("SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let most = sizes.iter().copied().max().unwrap_or(1);
    // 10,000 files: a kustomization and a deployment per application.
    let mut files: Vec<(String, String)> = Vec::new();
    for i in 0..MOST {
        files.push((
            format!("apps/app-{i}/kustomization.yaml"),
            format!("resources:\n  - deployment.yaml\nimages:\n  - name: REGISTRY/org/app-{i}\n    newTag: v1.0.0\n"),
        ));
        files.push((
            format!("apps/app-{i}/deployment.yaml"),
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: REGISTRY/org/app-{i}\n"),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let world = World::new(&refs, &["deploy/prod"]).await;
    let t = Instant::now();
    futures_util::stream::iter(0..most)
        .map(|i| {
            let world = &world;
            async move {
                push(world, i, "v1.0.0").await;
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    eprintln!("pushed {most} repositories in {:?}", t.elapsed());
    // POLLING=N: N pushes at each size without webhooks, timed to their polls instead.
    let polling: Option<usize> = std::env::var("POLLING").ok().and_then(|s| s.parse().ok());
    for (round, images) in sizes.into_iter().enumerate() {
        if let Some(n) = polling {
            let run = start(&world, images, false).await;
            let rows = polled(&run, n.min(images), round).await;
            println!("\n| {images} images, no webhooks, default settings | value |");
            println!("|---|---|");
            for (k, v) in rows {
                println!("| {k} | {v} |");
            }
            continue;
        }
        let run = start(&world, images, true).await;
        let mut rows = single(&run, samples, round).await;
        if images >= BURST {
            rows.extend(burst(&run, round).await);
        }
        let settings = match std::env::var("RATE_LIMIT") {
            Ok(n) => format!("rate_limit = {n}"),
            Err(_) => "default settings".to_string(),
        };
        println!("\n| {images} images, webhooks, {settings} | value |");
        println!("|---|---|");
        for (k, v) in rows {
            println!("| {k} | {v} |");
        }
        drop(run);
    }
}
