//! Write-back latency: one image change committed and pushed into a repository of 10,000
//! files, with a warm mirror, against the baseline of a fresh `git clone`, edit, commit, push.
//!
//! Run with `cargo bench --bench writeback`; it prints a table for `docs/benchmarks.md`.
//! The git server is `git daemon` on 127.0.0.1, started and stopped (by PID) by the bench.

#[allow(dead_code)]
#[path = "../tests/harness/git.rs"]
mod git_harness;

use std::time::{Duration, Instant};

use git_harness::{GitServer, git};
use image_updater::config::template::Template;
use image_updater::config::{Author, Environment, Repository, Target};
use image_updater::writeback::{Desired, ImageChange, Mirror, write_branch};

/// A port that was free a moment ago on 127.0.0.1 (the harness asks its parent module).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const FILES: usize = 10_000;
const WARM_RUNS: usize = 20;
const CLONE_RUNS: usize = 5;

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[(v.len() * 9).div_ceil(10) - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let server = GitServer::daemon();
    let kustomization = "images:\n  - name: ghcr.io/org/api\n    newTag: v1.0.0\n";
    let mut files: Vec<(String, String)> = (0..FILES - 1)
        .map(|i| {
            (
                format!("apps/app-{:03}/manifest-{i}.yaml", i % 500),
                format!("kind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  n: \"{i}\"\n"),
            )
        })
        .collect();
    files.push((
        "overlays/prod/kustomization.yaml".into(),
        kustomization.into(),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    server.create("big", &refs, &["deploy/prod"]);

    let repo = Repository {
        name: "big".into(),
        url: server.url("big"),
        credentials: None,
        author: Author {
            name: "image-updater".into(),
            email: "bot@example.com".into(),
        },
        commit_message: Template::default(),
        ssh_key: None,
        known_hosts: None,
        signing_key: None,
        forge: None,
    };
    let env = Environment {
        name: "prod".into(),
        repository: "big".into(),
        branch: "deploy/prod".into(),
        base_branch: None,
        priority: 0,
        write: Default::default(),
        pull_request: image_updater::config::PullRequest::on("image-updater/test"),
        windows: Default::default(),
    };
    let change = |i: usize| ImageChange {
        alias: "api".into(),
        desired: Desired {
            repository: "ghcr.io/org/api".into(),
            written: "ghcr.io/org/api".into(),
            tag: Some(format!("v1.0.{}", i + 1)),
            digest: None,
            replaces: Vec::new(),
            chart: None,
        },
        targets: vec![Target::Kustomization {
            file: "overlays/prod/kustomization.yaml".into(),
            name: "ghcr.io/org/api".into(),
        }],
        guard: None,
    };

    let state = tempfile::tempdir().unwrap();
    let cold_start = Instant::now();
    let mirror = Mirror::open(state.path(), &repo).await.unwrap();
    write_branch(&mirror, &repo, &env, &[change(0)], false)
        .await
        .unwrap();
    let cold = cold_start.elapsed();

    let mut warm = Vec::new();
    for i in 1..=WARM_RUNS {
        let t = Instant::now();
        let out = write_branch(&mirror, &repo, &env, &[change(i)], false)
            .await
            .unwrap();
        warm.push(t.elapsed());
        assert!(out.commit.is_some());
    }

    let mut clone = Vec::new();
    for i in 0..CLONE_RUNS {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        git(
            dir.path(),
            &[
                "clone",
                "--quiet",
                "--branch",
                "deploy/prod",
                &server.url("big"),
                "w",
            ],
        );
        let w = dir.path().join("w");
        let path = w.join("overlays/prod/kustomization.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let current = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("newTag: "))
            .unwrap()
            .to_string();
        std::fs::write(&path, text.replace(&current, &format!("v9.0.{i}"))).unwrap();
        git(&w, &["commit", "--quiet", "-am", "bump"]);
        git(&w, &["push", "--quiet", "origin", "deploy/prod"]);
        clone.push(t.elapsed());
    }

    let (wm, wp) = stats(warm);
    let (cm, cp) = stats(clone);
    println!("| workflow ({FILES} files) | runs | median | p90 |");
    println!("|---|---|---|---|");
    println!(
        "| warm mirror: fetch, tree edit, commit, leased push | {WARM_RUNS} | {} | {} |",
        ms(wm),
        ms(wp)
    );
    println!(
        "| first run: mirror created by a full fetch, then the same | 1 | {} | |",
        ms(cold)
    );
    println!(
        "| baseline: fresh `git clone`, edit, `git commit`, `git push` | {CLONE_RUNS} | {} | {} |",
        ms(cm),
        ms(cp)
    );
    println!(
        "speed-up of the warm mirror over the baseline: {:.1}x",
        cm.as_secs_f64() / wm.as_secs_f64()
    );
}
