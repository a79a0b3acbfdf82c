//! Requests per poll cycle for 50 repositories, against the real registry with token auth:
//! what a steady-state daemon costs a registry.
//!
//! Each repository is deployed to three environments, as in the seed article: dev takes the
//! newest `main-<sha>` build, staging release candidates, prod stable semver. Run with
//! `cargo bench --bench registry_requests` (needs `docker-registry` and `openssl`); the table
//! goes into docs/benchmarks.md.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::sync::Arc;
use std::time::Instant;

use harness::{Auth, PushAuth, Registry, TokenIssuer, push_image};
use image_updater::config::CredentialRef;
use image_updater::reference::Platform;
use image_updater::registry::{
    Client, Cycle, Endpoint, MetadataCache, Metrics, RequestKind, Snapshot, Tuning, choose,
};
use image_updater::select::{Constraint, Policy, Strategy, TagPattern};

const REPOSITORIES: usize = 50;

fn policies() -> Vec<(&'static str, Policy)> {
    let mut dev = Policy::new(Strategy::NewestBuild);
    dev.allow = vec![TagPattern::parse("regexp:^main-[a-f0-9]{7}$").unwrap()];
    let mut staging = Policy::new(Strategy::Semver {
        constraint: Constraint::parse(">=1.0.0-rc.0").unwrap(),
        include_prerelease: false,
    });
    staging.allow = vec![TagPattern::parse(r"regexp:^v[0-9]+\.[0-9]+\.[0-9]+-rc").unwrap()];
    let mut prod = Policy::new(Strategy::Semver {
        constraint: Constraint::parse(">=1.0.0 <2.0.0").unwrap(),
        include_prerelease: false,
    });
    prod.ignore = vec![TagPattern::parse("regexp:(-rc|-alpha|-beta)").unwrap()];
    vec![("dev", dev), ("staging", staging), ("prod", prod)]
}

fn row(label: &str, s: &Snapshot, elapsed: std::time::Duration) -> String {
    format!(
        "| {label} | {} | {} | {} | {} | {} | {:.0} ms |",
        s.count(RequestKind::TagList),
        s.count(RequestKind::ManifestHead),
        s.count(RequestKind::ManifestGet),
        s.count(RequestKind::BlobGet),
        s.count(RequestKind::Token),
        elapsed.as_secs_f64() * 1000.0
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench asks benches to list themselves; this one has no sub-benches.
    }
    harness::require_registry();
    let issuer = TokenIssuer::start("bot", "bench-pw", false).await;
    let registry = Registry::start(Auth::Token(issuer.settings.clone())).await;
    let base = registry.url();
    let pushed = Instant::now();
    for r in 0..REPOSITORIES {
        let repo = format!("team/service-{r:02}");
        let auth = PushAuth::Bearer(issuer.push_token(&repo));
        for (i, tag) in [
            "v1.0.0",
            "v1.1.0",
            "v1.2.0-rc.1",
            "v2.0.0",
            "main-aaaaaaa",
            "main-bbbbbbb",
            "main-ccccccc",
            "pr-1234",
        ]
        .iter()
        .enumerate()
        {
            let created = format!("2026-01-{:02}T00:00:00Z", i + 1);
            push_image(&base, &auth, &repo, Some(tag), &created, "linux/amd64").await;
        }
    }
    eprintln!(
        "pushed {} images in {:?}",
        REPOSITORIES * 8,
        pushed.elapsed()
    );

    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "bot:bench-pw\n").unwrap();
    let metrics = Arc::new(Metrics::default());
    let endpoint = Endpoint {
        name: "bench".into(),
        host: registry.host(),
        base_url: base.clone(),
        credentials: Some(CredentialRef::File(creds)),
        insecure: true,
        ca_file: None,
        rate_limit: 1000.0,
        credentials_ttl: std::time::Duration::from_secs(300),
    };
    let client = Client::new(
        endpoint,
        Tuning::default(),
        metrics.clone(),
        Arc::new(MetadataCache::in_memory()),
    )
    .unwrap();
    let policies = policies();
    let platforms = vec![Platform::default()];
    println!(
        "| cycle | tag lists | manifest HEADs | manifest GETs | blob GETs | token requests | wall time |"
    );
    println!("|---|---|---|---|---|---|---|");
    for cycle_no in 1..=4 {
        let before = metrics.snapshot();
        let started = Instant::now();
        let cycle = Cycle::new();
        for r in 0..REPOSITORIES {
            let repo = format!("team/service-{r:02}");
            for (env, policy) in &policies {
                let choice = choose(&client, &cycle, &repo, policy, &platforms)
                    .await
                    .unwrap();
                let expected = match *env {
                    "dev" => "main-ccccccc",
                    "staging" => "v1.2.0-rc.1",
                    _ => "v1.1.0",
                };
                assert_eq!(
                    choice.selected().map(|c| c.tag.as_str()),
                    Some(expected),
                    "{repo} {env}"
                );
            }
        }
        let delta = metrics.snapshot().since(&before);
        let label = if cycle_no == 1 {
            "1 (cold)".to_string()
        } else {
            format!("{cycle_no} (steady)")
        };
        println!("{}", row(&label, &delta, started.elapsed()));
    }
}
