//! Requests one poll costs a registry when `verify` applies: a semver image whose best tag is
//! signed, one whose best tag is unsigned above a signed one, and one with twenty unsigned
//! builds above its last signed release. Each is polled twice by one process (a daemon keeps
//! its verifier between polls): the first poll is cold, the second steady. Run with
//! `cargo bench --bench verify_requests` (needs `docker-registry` and `openssl`); the table
//! goes into docs/benchmarks.md.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::sync::Arc;

use harness::cosign::{self, Key};
use harness::{Auth, PushAuth, Registry, push_image};
use image_updater::config::{CredentialRef, Verification};
use image_updater::poll::{Cycle, Gate, choose_gated};
use image_updater::reference::Platform;
use image_updater::registry::{Client, Endpoint, MetadataCache, Metrics, RequestKind, Tuning};
use image_updater::select::{Constraint, Policy, Strategy};
use image_updater::verify::Verifier;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench asks benches to list themselves; this one has no sub-benches.
    }
    harness::require_registry();
    let registry = Registry::start(Auth::None).await;
    let base = registry.url();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let key = Key::generate(dir.path(), "release");
    // (scenario, repository, unsigned tags above the signed v1.0.0)
    let scenarios = [
        ("the best tag signed", "bench/signed", 0),
        (
            "one unsigned tag above a signed one",
            "bench/one-unsigned",
            1,
        ),
        (
            "twenty unsigned tags above a signed one",
            "bench/twenty-unsigned",
            20,
        ),
    ];
    for (_, repo, unsigned) in scenarios {
        let signed = push_image(
            &base,
            &PushAuth::None,
            repo,
            Some("v1.0.0"),
            "2026-01-01T00:00:00Z",
            "linux/amd64",
        )
        .await;
        cosign::sign(&base, &host, repo, &signed, &key).await;
        for minor in 1..=unsigned {
            push_image(
                &base,
                &PushAuth::None,
                repo,
                Some(&format!("v1.{minor}.0")),
                "2026-01-02T00:00:00Z",
                "linux/amd64",
            )
            .await;
        }
    }
    let endpoint = Endpoint {
        name: "bench".into(),
        host: host.clone(),
        base_url: base.clone(),
        credentials: None,
        insecure: true,
        ca_file: None,
        rate_limit: image_updater::config::limits::default_rate(&host).per_second,
        credentials_implied: false,
        credentials_ttl: std::time::Duration::from_secs(300),
    };
    let metrics = Arc::new(Metrics::default());
    let cache = Arc::new(MetadataCache::open(&dir.path().join("metadata.json")).0);
    let client = Client::new(endpoint, Tuning::default(), metrics.clone(), cache).unwrap();
    let policy = Policy::new(Strategy::Semver {
        constraint: Constraint::parse(">=1.0.0").unwrap(),
        include_prerelease: false,
    });
    let rules = Verification {
        keys: vec![CredentialRef::File(key.public.clone())],
        keyless: None,
        attestation: None,
    };
    let verifier = Verifier::new();
    let gate = Gate {
        reuse_digests: true,
        verify: Some((&verifier, &rules)),
        ..Gate::default()
    };
    let platforms = vec![Platform::default()];
    println!(
        "| image | poll | chosen | tag lists | manifest HEADs | manifest GETs | blob GETs | all requests |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (label, repo, _) in scenarios {
        for poll in ["1 (cold)", "2 (steady)"] {
            let before = metrics.snapshot();
            let choice = choose_gated(&client, &Cycle::new(), repo, &policy, &platforms, &gate)
                .await
                .unwrap();
            let chosen = choice.selected().map_or("none", |c| c.tag.as_str());
            let s = metrics.snapshot().since(&before);
            let kinds = [
                RequestKind::TagList,
                RequestKind::ManifestHead,
                RequestKind::ManifestGet,
                RequestKind::BlobGet,
            ];
            let all: u64 = kinds.iter().map(|k| s.count(*k)).sum();
            println!(
                "| {label} | {poll} | {chosen} | {} | {} | {} | {} | {all} |",
                s.count(RequestKind::TagList),
                s.count(RequestKind::ManifestHead),
                s.count(RequestKind::ManifestGet),
                s.count(RequestKind::BlobGet),
            );
        }
    }
}
