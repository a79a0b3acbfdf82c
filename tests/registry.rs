//! The registry client against the real CNCF distribution registry on 127.0.0.1: anonymous,
//! htpasswd basic auth and token auth, multi-arch indexes, and mutable tags.

mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::{Auth, PushAuth, Registry, TokenIssuer, push_image, push_index};
use image_updater::config::CredentialRef;
use image_updater::poll::{Cycle, Gate, choose, choose_gated};
use image_updater::reference::Platform;
use image_updater::registry::{
    Client, Endpoint, ImageInfo, MetadataCache, Metrics, RegistryError, RequestKind, TokenStore,
    Tuning,
};
use image_updater::select::{Constraint, Policy, Strategy, TagPattern};

fn endpoint(registry: &Registry, credentials: Option<CredentialRef>) -> Endpoint {
    Endpoint {
        name: "local".into(),
        host: registry.host(),
        base_url: registry.url(),
        credentials,
        insecure: true,
        ca_file: None,
        rate_limit: 200.0,
        credentials_implied: false,
        credentials_ttl: std::time::Duration::from_secs(300),
    }
}

fn client(endpoint: Endpoint) -> (Client, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let tuning = Tuning {
        base_delay: Duration::from_millis(10),
        ..Tuning::default()
    };
    let c = Client::new(
        endpoint,
        tuning,
        metrics.clone(),
        Arc::new(MetadataCache::in_memory()),
    )
    .unwrap();
    (c, metrics)
}

fn amd64() -> Vec<Platform> {
    vec![Platform::default()]
}

/// Writes a credential to a file and returns its reference: env vars are process-wide, and
/// the tests in this file run in parallel.
fn secret_file(dir: &tempfile::TempDir, name: &str, value: &str) -> CredentialRef {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    CredentialRef::File(path)
}

#[tokio::test]
async fn anonymous_tags_digests_and_newest_build() {
    needs!(Registry, Openssl);
    harness::require_registry();
    let reg = Registry::start(Auth::None).await;
    let base = reg.url();
    let none = PushAuth::None;
    for (tag, created) in [
        ("v1.4.0", "2026-01-01T00:00:00Z"),
        ("v1.5.0-rc.1", "2026-01-05T00:00:00Z"),
        ("v1.5.0", "2026-01-10T00:00:00Z"),
        ("v2.0.0", "2026-01-12T00:00:00Z"),
        ("main-aaaaaaa", "2026-01-20T00:00:00Z"),
        ("main-bbbbbbb", "2026-01-21T00:00:00Z"),
        ("dev-ccccccc", "2026-01-22T00:00:00Z"),
    ] {
        push_image(&base, &none, "org/api", Some(tag), created, "linux/amd64").await;
    }
    let (client, metrics) = client(endpoint(&reg, None));
    let mut tags = client.list_tags("org/api").await.unwrap();
    tags.sort();
    assert_eq!(
        tags,
        [
            "dev-ccccccc",
            "main-aaaaaaa",
            "main-bbbbbbb",
            "v1.4.0",
            "v1.5.0",
            "v1.5.0-rc.1",
            "v2.0.0"
        ]
    );

    // prod: semver needs only the tag list, plus the winner's platform check.
    let cycle = Cycle::new();
    let mut prod = Policy::new(Strategy::Semver {
        constraint: Constraint::parse(">=1.0.0 <2.0.0").unwrap(),
        include_prerelease: false,
    });
    prod.ignore = vec![TagPattern::parse("regexp:(-rc|-alpha|-beta)").unwrap()];
    let choice = choose(&client, &cycle, "org/api", &prod, &amd64())
        .await
        .unwrap();
    assert_eq!(choice.selected().unwrap().tag, "v1.5.0");
    assert!(choice.digest.as_deref().unwrap().starts_with("sha256:"));

    // dev: the newest main build, by the image config's creation time.
    let mut dev = Policy::new(Strategy::NewestBuild);
    dev.allow = vec![TagPattern::parse("regexp:^main-[a-f0-9]{7}$").unwrap()];
    let choice = choose(&client, &cycle, "org/api", &dev, &amd64())
        .await
        .unwrap();
    assert_eq!(choice.selected().unwrap().tag, "main-bbbbbbb");
    assert_eq!(
        choice.selected().unwrap().created.unwrap().to_string(),
        "2026-01-21T00:00:00Z"
    );

    // Both environments shared one listing in this cycle.
    let snap = metrics.snapshot();
    assert_eq!(
        snap.count(RequestKind::TagList),
        2,
        "one direct listing, one for the cycle: {snap:?}"
    );
    // newest-build looked only at the two main builds, not at every tag.
    assert!(snap.count(RequestKind::ManifestHead) <= 3, "{snap:?}");

    // A second cycle costs no manifest or config GETs: digests are cached.
    let before = metrics.snapshot();
    let choice = choose(&client, &Cycle::new(), "org/api", &dev, &amd64())
        .await
        .unwrap();
    assert_eq!(choice.selected().unwrap().tag, "main-bbbbbbb");
    let delta = metrics.snapshot().since(&before);
    assert_eq!(delta.count(RequestKind::ManifestGet), 0, "{delta:?}");
    assert_eq!(delta.count(RequestKind::BlobGet), 0, "{delta:?}");
    assert_eq!(delta.count(RequestKind::TagList), 1);
}

#[tokio::test]
async fn multi_arch_indexes_and_platform_checks() {
    needs!(Registry, Openssl);
    harness::require_registry();
    let reg = Registry::start(Auth::None).await;
    let base = reg.url();
    let none = PushAuth::None;
    push_index(
        &base,
        &none,
        "org/web",
        "v2.1.0",
        "2026-02-01T00:00:00Z",
        &["linux/amd64", "linux/arm64/v8"],
    )
    .await;
    // The newest release was built for amd64 only.
    push_image(
        &base,
        &none,
        "org/web",
        Some("v2.2.0"),
        "2026-02-02T00:00:00Z",
        "linux/amd64",
    )
    .await;
    let (client, _) = client(endpoint(&reg, None));
    let both = vec![
        Platform::parse("linux/amd64").unwrap(),
        Platform::parse("linux/arm64").unwrap(),
    ];
    let digest = client.resolve("org/web", "v2.1.0").await.unwrap();
    assert_eq!(
        client.image_info("org/web", &digest, &both).await.unwrap(),
        ImageInfo::Available {
            created: Some("2026-02-01T00:00:00Z".parse().unwrap()),
            source: None,
        }
    );
    let policy = Policy::new(Strategy::Semver {
        constraint: Constraint::parse("^2").unwrap(),
        include_prerelease: false,
    });
    let choice = choose(&client, &Cycle::new(), "org/web", &policy, &both)
        .await
        .unwrap();
    assert_eq!(
        choice.selected().unwrap().tag,
        "v2.1.0",
        "v2.2.0 lacks arm64"
    );
    let v220 = choice
        .candidates
        .iter()
        .position(|c| c.tag == "v2.2.0")
        .unwrap();
    assert_eq!(
        choice.selection.verdicts[v220].reason,
        "image has no linux/arm64 platform"
    );
    // amd64 alone takes the newest.
    let choice = choose(&client, &Cycle::new(), "org/web", &policy, &amd64())
        .await
        .unwrap();
    assert_eq!(choice.selected().unwrap().tag, "v2.2.0");
}

#[tokio::test]
async fn a_mutable_tag_repushed_resolves_to_its_new_digest() {
    needs!(Registry, Openssl);
    harness::require_registry();
    let reg = Registry::start(Auth::None).await;
    let base = reg.url();
    let first = push_image(
        &base,
        &PushAuth::None,
        "org/migrator",
        Some("latest"),
        "2026-03-01T00:00:00Z",
        "linux/amd64",
    )
    .await;
    let (client, _) = client(endpoint(&reg, None));
    let digest = Policy::new(Strategy::Digest {
        tag: "latest".into(),
    });
    let choice = choose(&client, &Cycle::new(), "org/migrator", &digest, &amd64())
        .await
        .unwrap();
    assert_eq!(choice.digest.as_deref(), Some(first.as_str()));
    let second = push_image(
        &base,
        &PushAuth::None,
        "org/migrator",
        Some("latest"),
        "2026-03-02T00:00:00Z",
        "linux/amd64",
    )
    .await;
    assert_ne!(first, second);
    let choice = choose(&client, &Cycle::new(), "org/migrator", &digest, &amd64())
        .await
        .unwrap();
    assert_eq!(choice.digest.as_deref(), Some(second.as_str()));
}

/// One poll of `org/app` in a cycle of its own; the tag chosen.
async fn poll(client: &Client, policy: &Policy, gate: &Gate<'_>) -> String {
    choose_gated(client, &Cycle::new(), "org/app", policy, &amd64(), gate)
        .await
        .unwrap()
        .selected()
        .unwrap()
        .tag
        .clone()
}

/// Issue: newest-build re-HEADed every candidate every cycle and semver its winner. With
/// immutable tags (the default) a tag is resolved once, across cycles and processes; a new
/// build costs one HEAD; the tag the digest strategy follows is asked for every time.
#[tokio::test]
async fn immutable_tags_are_resolved_once() {
    needs!(Registry);
    let reg = Registry::start(Auth::None).await;
    let base = reg.url();
    for (i, tag) in [
        "v1.0.0",
        "v1.1.0",
        "main-aaaaaaa",
        "main-bbbbbbb",
        "main-ccccccc",
    ]
    .iter()
    .enumerate()
    {
        let created = format!("2026-01-0{}T00:00:00Z", i + 1);
        push_image(
            &base,
            &PushAuth::None,
            "org/app",
            Some(tag),
            &created,
            "linux/amd64",
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.json");
    let process = |cache: Arc<MetadataCache>| {
        let metrics = Arc::new(Metrics::default());
        let c = Client::new(
            endpoint(&reg, None),
            Tuning::default(),
            metrics.clone(),
            cache,
        )
        .unwrap();
        (c, metrics)
    };
    let cache = Arc::new(MetadataCache::open(&path).0);
    let (client, metrics) = process(cache.clone());
    let mut builds = Policy::new(Strategy::NewestBuild);
    builds.allow = vec![TagPattern::parse("regexp:^main-").unwrap()];
    let semver = Policy::new(Strategy::Semver {
        constraint: Constraint::parse("*").unwrap(),
        include_prerelease: false,
    });
    let immutable = Gate {
        reuse_digests: true,
        ..Gate::default()
    };
    let heads = |m: &Metrics| m.snapshot().count(RequestKind::ManifestHead);
    assert_eq!(poll(&client, &builds, &immutable).await, "main-ccccccc");
    assert_eq!(poll(&client, &semver, &immutable).await, "v1.1.0");
    assert_eq!(
        heads(&metrics),
        4,
        "three builds and one release, once each"
    );
    assert_eq!(poll(&client, &builds, &immutable).await, "main-ccccccc");
    assert_eq!(poll(&client, &semver, &immutable).await, "v1.1.0");
    assert_eq!(heads(&metrics), 4, "nothing asked again");
    // A new build: one HEAD.
    push_image(
        &base,
        &PushAuth::None,
        "org/app",
        Some("main-ddddddd"),
        "2026-02-01T00:00:00Z",
        "linux/amd64",
    )
    .await;
    assert_eq!(poll(&client, &builds, &immutable).await, "main-ddddddd");
    assert_eq!(heads(&metrics), 5);
    // Mutable tags are asked for every poll.
    poll(&client, &semver, &Gate::default()).await;
    assert_eq!(heads(&metrics), 6);
    // The next process reads what this one learned from the state dir.
    cache.save().unwrap();
    let (next, metrics) = process(Arc::new(MetadataCache::open(&path).0));
    assert_eq!(poll(&next, &builds, &immutable).await, "main-ddddddd");
    assert_eq!(heads(&metrics), 0);
    // The digest strategy follows its tag whatever the image's tags are said to be.
    let digest = Policy::new(Strategy::Digest {
        tag: "v1.1.0".into(),
    });
    poll(&next, &digest, &immutable).await;
    poll(&next, &digest, &immutable).await;
    assert_eq!(heads(&metrics), 2);
}

#[tokio::test]
async fn htpasswd_basic_auth() {
    needs!(Registry, Openssl);
    harness::require_registry();
    let reg = Registry::start(Auth::Htpasswd {
        user: "bot".into(),
        password: "s3cret-pw".into(),
    })
    .await;
    let push = PushAuth::Basic("bot".into(), "s3cret-pw".into());
    push_image(
        &reg.url(),
        &push,
        "team/app",
        Some("1.0.0"),
        "2026-01-01T00:00:00Z",
        "linux/amd64",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();

    let (anonymous, _) = client(endpoint(&reg, None));
    let err = anonymous.list_tags("team/app").await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(
        err.to_string().contains("requires a username and password"),
        "{err}"
    );

    let wrong = secret_file(&dir, "wrong", "bot:not-the-password");
    let (wrong, _) = client(endpoint(&reg, Some(wrong)));
    let err = wrong.list_tags("team/app").await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(
        !err.to_string().contains("not-the-password"),
        "secret leaked: {err}"
    );

    let good = secret_file(&dir, "good", "bot:s3cret-pw");
    let (good, metrics) = client(endpoint(&reg, Some(good)));
    assert_eq!(good.list_tags("team/app").await.unwrap(), ["1.0.0"]);
    // After the first challenge, credentials are sent up front: no more 401s.
    good.list_tags("team/app").await.unwrap();
    let snap = metrics.snapshot();
    let unauthorized: u64 = snap
        .requests
        .iter()
        .filter(|((_, _, s), _)| *s == 401)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(unauthorized, 1, "{snap:?}");
}

#[tokio::test]
async fn token_auth_tokens_are_reused_until_they_expire() {
    needs!(Registry, Openssl);
    harness::require_registry();
    let issuer = TokenIssuer::start("bot", "tok-pw", true).await;
    let reg = Registry::start(Auth::Token(issuer.settings.clone())).await;
    let push = PushAuth::Bearer(issuer.push_token("org/private"));
    push_index(
        &reg.url(),
        &push,
        "org/private",
        "v1.0.0",
        "2026-04-01T00:00:00Z",
        &["linux/amd64", "linux/arm64"],
    )
    .await;
    push_image(
        &reg.url(),
        &push,
        "org/private",
        Some("v1.1.0"),
        "2026-04-02T00:00:00Z",
        "linux/amd64",
    )
    .await;
    let pushes = issuer.requests.load(std::sync::atomic::Ordering::SeqCst);

    let dir = tempfile::tempdir().unwrap();
    let creds = secret_file(&dir, "token-creds", "bot:tok-pw");
    let (client, metrics) = client(endpoint(&reg, Some(creds)));
    let policy = Policy::new(Strategy::Semver {
        constraint: Constraint::parse("*").unwrap(),
        include_prerelease: false,
    });
    let choice = choose(&client, &Cycle::new(), "org/private", &policy, &amd64())
        .await
        .unwrap();
    assert_eq!(choice.selected().unwrap().tag, "v1.1.0");
    let first = metrics.snapshot();
    assert_eq!(
        first.count(RequestKind::Token),
        1,
        "one token for the repository's pull scope: {first:?}"
    );

    // Steady state: a second cycle asks for no token.
    choose(&client, &Cycle::new(), "org/private", &policy, &amd64())
        .await
        .unwrap();
    let delta = metrics.snapshot().since(&first);
    assert_eq!(delta.count(RequestKind::Token), 0, "{delta:?}");
    assert_eq!(delta.count(RequestKind::TagList), 1);
    assert_eq!(
        issuer.requests.load(std::sync::atomic::Ordering::SeqCst) - pushes,
        1
    );

    // Another scope: its token is asked for at the realm the registry's challenge named
    // before, without first sending the request to be refused with a 401.
    push_image(
        &reg.url(),
        &PushAuth::Bearer(issuer.push_token("org/second")),
        "org/second",
        Some("v1.0.0"),
        "2026-04-01T00:00:00Z",
        "linux/amd64",
    )
    .await;
    let before = metrics.snapshot();
    assert_eq!(client.list_tags("org/second").await.unwrap(), ["v1.0.0"]);
    let delta = metrics.snapshot().since(&before);
    assert_eq!(delta.count(RequestKind::Token), 1, "{delta:?}");
    assert_eq!(
        delta.count(RequestKind::TagList),
        1,
        "no 401 first: {delta:?}"
    );
    assert!(
        delta.requests.keys().all(|(_, _, status)| *status != 401),
        "{delta:?}"
    );

    // Anonymous pulls get their own (anonymous) token; a wrong password is refused.
    let (anon, _) = client_for(&reg, None);
    assert_eq!(anon.list_tags("org/private").await.unwrap().len(), 2);
    let wrong = secret_file(&dir, "wrong", "bot:nope");
    let (wrong, _) = client_for(&reg, Some(wrong));
    let err = wrong.list_tags("org/private").await.unwrap_err();
    assert!(
        err.to_string().contains("token service answered 401"),
        "{err}"
    );

    // The token service goes down: a client without a cached token fails, and says where.
    drop(issuer);
    let (fresh, _) = client_for(&reg, Some(secret_file(&dir, "again", "bot:tok-pw")));
    let err = fresh.list_tags("org/private").await.unwrap_err();
    assert!(
        err.to_string().contains("token service http://127.0.0.1"),
        "{err}"
    );
    // One that holds a valid token keeps working until it expires.
    assert_eq!(client.list_tags("org/private").await.unwrap().len(), 2);
}

/// Issue: 6 tokens were fetched within a second for one scope, and every `once` process
/// fetched a token per repository. Callers wait for the one refresh in flight, and tokens saved
/// in the state dir serve the next process while they are valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_per_scope_shared_by_callers_and_by_the_next_process() {
    needs!(Registry, Openssl);
    let issuer = TokenIssuer::start("bot", "tok-pw", false).await;
    let reg = Registry::start(Auth::Token(issuer.settings.clone())).await;
    let push = PushAuth::Bearer(issuer.push_token("org/app"));
    for tag in ["v1.0.0", "v1.1.0"] {
        push_image(
            &reg.url(),
            &push,
            "org/app",
            Some(tag),
            "2026-04-01T00:00:00Z",
            "linux/amd64",
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let creds = secret_file(&dir, "creds", "bot:tok-pw");
    let path = dir.path().join("state/cache/tokens.json");
    let process = |store: Arc<TokenStore>| {
        let metrics = Arc::new(Metrics::default());
        let client = Client::with_tokens(
            endpoint(&reg, Some(creds.clone())),
            Tuning::default(),
            metrics.clone(),
            Arc::new(MetadataCache::in_memory()),
            store,
        )
        .unwrap();
        (client, metrics)
    };
    // Eight callers at once, no token yet: one token request.
    let store = Arc::new(TokenStore::open(&path));
    let (client, metrics) = process(store.clone());
    let calls: Vec<_> = (0..8).map(|_| client.list_tags("org/app")).collect();
    for tags in futures_util::future::join_all(calls).await {
        assert_eq!(tags.unwrap().len(), 2);
    }
    assert_eq!(metrics.snapshot().count(RequestKind::Token), 1);
    store.save().unwrap();
    // The next process (a second `once`) finds the token in the state dir.
    let (again, metrics) = process(Arc::new(TokenStore::open(&path)));
    assert_eq!(again.list_tags("org/app").await.unwrap().len(), 2);
    let snapshot = metrics.snapshot();
    assert_eq!(snapshot.count(RequestKind::Token), 0, "{snapshot:?}");
    assert_eq!(
        snapshot.count(RequestKind::TagList),
        1,
        "no 401 round trip either"
    );
}

fn client_for(reg: &Registry, creds: Option<CredentialRef>) -> (Client, Arc<Metrics>) {
    client(endpoint(reg, creds))
}

#[tokio::test]
async fn missing_repositories_and_plain_http_without_opt_in() {
    needs!(Registry, Openssl);
    harness::require_registry();
    let reg = Registry::start(Auth::None).await;
    let (client, _) = client(endpoint(&reg, None));
    let err = client.list_tags("org/nothing-here").await.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    let mut plain = endpoint(&reg, None);
    plain.insecure = false;
    let err = Client::new(plain, Tuning::default(), Arc::default(), Arc::default()).unwrap_err();
    assert!(err.to_string().contains("set insecure = true"), "{err}");
}

/// `image-updater test` against the registry, as a user previews a policy.
#[tokio::test]
async fn the_test_command_queries_the_registry() {
    needs!(Registry, Openssl);
    harness::require_registry();
    let reg = Registry::start(Auth::Htpasswd {
        user: "bot".into(),
        password: "pw-123".into(),
    })
    .await;
    let push = PushAuth::Basic("bot".into(), "pw-123".into());
    for (tag, created) in [
        ("v1.4.0", "2026-01-01T00:00:00Z"),
        ("v1.5.0", "2026-01-02T00:00:00Z"),
        ("v2.0.0", "2026-01-03T00:00:00Z"),
    ] {
        push_image(
            &reg.url(),
            &push,
            "org/api",
            Some(tag),
            created,
            "linux/amd64",
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "bot:pw-123\n").unwrap();
    let config = dir.path().join("updater.toml");
    std::fs::write(
        &config,
        format!(
            "[registries.local]\nprefix = \"{}\"\napi_url = \"{}\"\ninsecure = true\ncredentials = \"file:{}\"\n",
            reg.host(),
            reg.url(),
            creds.display()
        ),
    )
    .unwrap();
    let image = format!("{}/org/api", reg.host());
    let bin = env!("CARGO_BIN_EXE_image-updater");
    let run = |args: Vec<String>| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, stdout, stderr) = run(vec![
        "test".into(),
        image.clone(),
        "--semver-constraint".into(),
        ">=1.0.0 <2.0.0".into(),
        "--config".into(),
        config.display().to_string(),
        "--output".into(),
        "json".into(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["selected"], "v1.5.0");
    let selected = report["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "v1.5.0")
        .unwrap();
    assert!(selected["digest"].as_str().unwrap().starts_with("sha256:"));
    let v2 = report["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "v2.0.0")
        .unwrap();
    assert_eq!(v2["reason"], "outside constraint `>=1.0.0 <2.0.0`");

    // --credentials and --insecure without a config; a wrong password is a clear error, exit 2.
    let (code, stdout, _) = run(vec![
        "test".into(),
        image.clone(),
        "--update-strategy".into(),
        "newest-build".into(),
        "--insecure".into(),
        "--credentials".into(),
        format!("file:{}", creds.display()),
    ]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("selected: v2.0.0"), "{stdout}");
    assert!(stdout.contains("digest:   sha256:"), "{stdout}");
    let (code, _, stderr) = run(vec!["test".into(), image, "--insecure".into()]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("requires a username and password"),
        "{stderr}"
    );
}

/// TLS is verified by default; a custom CA file makes a private registry trusted, and
/// `insecure` is the only way around verification.
#[tokio::test]
async fn tls_verification_and_a_custom_ca() {
    needs!(Registry, Openssl);
    harness::require_registry();
    let certs = tempfile::tempdir().unwrap();
    let tls = harness::Tls::generate(certs.path());
    let reg = Registry::start_tls(Auth::None, tls.clone()).await;
    push_image(
        &reg.url(),
        &PushAuth::None,
        "org/api",
        Some("v1.0.0"),
        "2026-01-01T00:00:00Z",
        "linux/amd64",
    )
    .await;

    let mut verified = endpoint(&reg, None);
    verified.insecure = false;
    let (untrusting, _) = client(verified.clone());
    let err = untrusting.list_tags("org/api").await.unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    verified.ca_file = Some(tls.ca.clone());
    let (trusting, _) = client(verified);
    assert_eq!(trusting.list_tags("org/api").await.unwrap(), ["v1.0.0"]);

    let (insecure, _) = client(endpoint(&reg, None));
    assert_eq!(insecure.list_tags("org/api").await.unwrap(), ["v1.0.0"]);
}

/// The per-registry rate limit spaces requests out.
#[tokio::test]
async fn the_request_rate_is_limited_per_registry() {
    needs!(Registry, Openssl);
    harness::require_registry();
    let reg = Registry::start(Auth::None).await;
    push_image(
        &reg.url(),
        &PushAuth::None,
        "org/api",
        Some("v1.0.0"),
        "2026-01-01T00:00:00Z",
        "linux/amd64",
    )
    .await;
    let mut slow = endpoint(&reg, None);
    slow.rate_limit = 4.0;
    let (client, _) = client(slow);
    let started = std::time::Instant::now();
    for _ in 0..9 {
        client.list_tags("org/api").await.unwrap();
    }
    // 4 per second, with a burst of 4: the first four go at once, the other five wait a
    // quarter of a second each.
    assert!(
        started.elapsed() >= Duration::from_millis(1150),
        "{:?}",
        started.elapsed()
    );
}
