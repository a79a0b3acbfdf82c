//! Requests per poll cycle for 50 repositories, against the real registry with token auth:
//! what a steady-state daemon costs a registry.
//!
//! Each repository is deployed to three environments with three strategies: dev takes the
//! newest `main-<sha>` build, staging follows the mutable `latest` tag by digest, prod takes
//! stable semver. Tags are immutable (the default) except the one the digest strategy follows.
//! After four cycles, a second process (a second `once`) starts from what the first saved in
//! its state dir: tokens and what each tag resolved to. Run with
//! `cargo bench --bench registry_requests` (needs `docker-registry` and `openssl`); the table
//! goes into docs/benchmarks.md.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::sync::Arc;
use std::time::Instant;

use harness::{Auth, PushAuth, Registry, TokenIssuer, push_image};
use image_updater::config::CredentialRef;
use image_updater::poll::{Cycle, Gate, choose_gated};
use image_updater::reference::Platform;
use image_updater::registry::{
    Client, Endpoint, MetadataCache, Metrics, RequestKind, Snapshot, TokenStore, Tuning,
};
use image_updater::select::{Constraint, Policy, Strategy, TagPattern};

const REPOSITORIES: usize = 50;

fn policies() -> Vec<(&'static str, Policy)> {
    let mut dev = Policy::new(Strategy::NewestBuild);
    dev.allow = vec![TagPattern::parse("regexp:^main-[a-f0-9]{7}$").unwrap()];
    let staging = Policy::new(Strategy::Digest {
        tag: "latest".into(),
    });
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
            "latest",
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
        REPOSITORIES * 9,
        pushed.elapsed()
    );

    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "bot:bench-pw\n").unwrap();
    let state = dir.path().join("state");
    let endpoint = Endpoint {
        name: "bench".into(),
        host: registry.host(),
        base_url: base.clone(),
        credentials: Some(CredentialRef::File(creds)),
        insecure: true,
        ca_file: None,
        // Default settings: what a registry that publishes no limit gets.
        rate_limit: image_updater::config::limits::default_rate(&registry.host()).per_second,
        credentials_implied: false,
        credentials_ttl: std::time::Duration::from_secs(300),
    };
    // One process: its clients, tokens and metadata, opened from the state dir.
    let process = || {
        let metrics = Arc::new(Metrics::default());
        let cache = Arc::new(MetadataCache::open(&state.join("cache/metadata.json")).0);
        let tokens = Arc::new(TokenStore::open(&state.join("cache/tokens.json")));
        let client = Client::with_tokens(
            endpoint.clone(),
            Tuning::default(),
            metrics.clone(),
            cache.clone(),
            tokens.clone(),
        )
        .unwrap();
        (client, metrics, cache, tokens)
    };
    let policies = policies();
    let platforms = vec![Platform::default()];
    let immutable = Gate {
        reuse_digests: true,
        ..Gate::default()
    };
    println!(
        "| cycle | tag lists | manifest HEADs | manifest GETs | blob GETs | token requests | wall time |"
    );
    println!("|---|---|---|---|---|---|---|");
    let (mut client, mut metrics, mut cache, mut tokens) = process();
    for cycle_no in 1..=5 {
        if cycle_no == 5 {
            // A second `once`: a new process reading what the first saved.
            cache.save().unwrap();
            tokens.save().unwrap();
            (client, metrics, cache, tokens) = process();
        }
        let before = metrics.snapshot();
        let started = Instant::now();
        let cycle = Cycle::new();
        for r in 0..REPOSITORIES {
            let repo = format!("team/service-{r:02}");
            for (env, policy) in &policies {
                let choice = choose_gated(&client, &cycle, &repo, policy, &platforms, &immutable)
                    .await
                    .unwrap();
                let expected = match *env {
                    "dev" => "main-ccccccc",
                    "staging" => "latest",
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
        let label = match cycle_no {
            1 => "1 (cold)".to_string(),
            5 => "5 (a second process)".to_string(),
            n => format!("{n} (steady)"),
        };
        println!("{}", row(&label, &delta, started.elapsed()));
    }
}
