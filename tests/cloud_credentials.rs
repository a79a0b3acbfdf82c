//! Registries behind a cloud's own sign-in, end to end: the real `image-updater` binary,
//! `once` and the daemon, against a real registry (Debian's `docker-registry`) and the test
//! clouds of `harness::cloud`, which are written from each cloud's API reference and judge
//! every request they receive (SigV4 recomputed with the test secret, JWT signatures and
//! claims, metadata headers).
//!
//! - AWS: ECR answers Basic challenges itself, so the registry takes only `AWS` and the
//!   password the test ECR gives (htpasswd); keys from the environment, the shared file, or
//!   web identity through STS.
//! - Google and Azure: the registry is in token mode behind the cloud's token service on its
//!   own host (`/v2/token`, ACR's `/oauth2/token`), which takes only a password the test cloud
//!   issued and that has not expired; each password there lasts eight seconds, so the daemon
//!   runs across several expiries and must renew before each.

mod harness;

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use harness::cloud::aws::{self as test_aws, Aws, PASSWORD, REGION};
use harness::cloud::azure::Azure;
use harness::cloud::google::Google;
use harness::cloud::{Front, Issued, Judged, write};
use harness::world::World;
use harness::{Auth, PushAuth};

const KEY_ID: &str = test_aws::KEY_ID;
const SECRET: &str = test_aws::SECRET;

const KUSTOMIZATION: &str = "images:\n  - name: REGISTRY/org/api\n    newTag: v1.0.0\n";

/// Variables that keep every chain inside the test, whatever the machine has.
const ISOLATED: [(&str, &str); 6] = [
    (
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/aws-credentials",
    ),
    ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("CLOUDSDK_CONFIG", "/nonexistent/gcloud"),
    ("GCE_METADATA_HOST", "127.0.0.1:9"),
    ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9"),
];

/// The variables of the clouds' chains that a test must not inherit.
const INHERITED: [&str; 14] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
];

/// A world whose registry takes `auth`, with `org/api` v1.0.0 and v1.1.0, and a config whose
/// registry signs in with `credentials`.
async fn world(auth: Auth, push: PushAuth, credentials: &str) -> World {
    let world = World::with_registry(
        &[("prod/kustomization.yaml", KUSTOMIZATION)],
        &["deploy/prod"],
        auth,
        push,
    )
    .await;
    let host = world.host();
    released(&world, &host, credentials).await;
    world
}

/// A world whose registry is behind a cloud's `front`, reached at the front's host.
async fn world_behind(front: &Front, credentials: &str) -> World {
    let kustomization = KUSTOMIZATION.replace("REGISTRY", &front.host);
    let world = World::with_registry(
        &[("prod/kustomization.yaml", &kustomization)],
        &["deploy/prod"],
        front.auth(),
        PushAuth::Bearer(front.push_token("org/api")),
    )
    .await;
    front.forward_to(&world.registry.url());
    released(&world, &front.host, credentials).await;
    world
}

/// Pushes `org/api` v1.0.0 and v1.1.0, and writes a config whose registry, reached at
/// `host`, signs in with `credentials`, and whose image `api` is deployed to prod.
async fn released(world: &World, host: &str, credentials: &str) {
    world.push("org/api", "v1.0.0").await;
    world.push("org/api", "v1.1.0").await;
    let mut config = world
        .base_config(&["prod"])
        .replace(&world.host(), host)
        .replace(
            "rate_limit = 100\n",
            &format!("rate_limit = 100\ncredentials = \"{credentials}\"\n"),
        );
    config.push_str(&format!(
        "\n[images.api]\nimage = \"{host}/org/api\"\n[[images.api.targets]]\nkind = \"kustomization\"\nfile = \"prod/kustomization.yaml\"\nname = \"{host}/org/api\"\n"
    ));
    world.write_config(&config);
}

/// `once` with only `env` for the clouds' chains.
fn once(world: &World, env: &[(&str, &str)], more: &[(&str, &str)]) -> std::process::Output {
    let mut command = world.command(&["once"]);
    for var in INHERITED {
        command.env_remove(var);
    }
    command
        .envs(ISOLATED)
        .envs(env.iter().copied())
        .envs(more.iter().copied());
    command.output().unwrap()
}

fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn deployed(world: &World) -> String {
    world.file_on("deploy/prod", "prod/kustomization.yaml")
}

/// The cloud's passwords are kept in the state dir, 0600, as registry tokens are.
fn assert_kept_privately(world: &World) {
    let tokens = world.state_dir().join("cache/tokens.json");
    let mode = std::fs::metadata(&tokens).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", tokens.display());
}

/// `once`, then the daemon across several of the password's expiries: a release pushed
/// after the first password expired, and another after the next, are both committed; the
/// cloud was asked again each time, and no expired password was ever sent.
async fn daemon_across_expiries(world: &World, env: &[(&str, &str)], issued: impl Fn() -> usize) {
    let mut all: Vec<(&str, &str)> = ISOLATED.to_vec();
    all.extend_from_slice(env);
    let daemon = world.start_with_env(&world.config_path(), &all);
    let before = issued();
    for (tag, after) in [("v1.2.0", 9), ("v1.3.0", 9)] {
        tokio::time::sleep(Duration::from_secs(after)).await;
        world.push("org/api", tag).await;
        world
            .wait_for(
                "deploy/prod",
                "prod/kustomization.yaml",
                &format!("newTag: {tag}"),
                &daemon,
            )
            .await;
    }
    assert!(
        issued() >= before + 2,
        "the cloud issued {} passwords before and {} after 18 s of eight-second passwords",
        before,
        issued()
    );
    let log = daemon.log();
    for secret in [SECRET, PASSWORD, harness::cloud::azure::CLIENT_SECRET] {
        assert!(!log.contains(secret), "the log holds a secret:\n{log}");
    }
}

/// `once` commits v1.1.0, asking the cloud's endpoints `asked` and keeping the password
/// privately; then the daemon runs across several expiries and never sends an expired one.
async fn end_to_end(
    world: &World,
    env: &[(&str, &str)],
    judged: &Judged,
    asked: &[&str],
    issued: &Issued,
) {
    let out = once(world, env, &[]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(deployed(world).contains("newTag: v1.1.0"));
    assert_eq!(judged.asked(), asked);
    assert_kept_privately(world);
    daemon_across_expiries(world, env, || issued.issued()).await;
    judged.assert_all_held();
    let expired = issued
        .expired_uses
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(expired, 0, "an expired password was sent");
}

/// Keys from the environment: ECR is asked with a signature AWS would accept, and the
/// password it answers reaches the registry and nothing else; the release is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_passwords_from_keys_in_the_environment_commit_a_release() {
    needs!(Registry, Lighttpd);
    let dir = tempfile::tempdir().unwrap();
    let aws = Aws::start(dir.path()).await;
    let world = ecr_world().await;
    let ecr = format!("{}/ecr/", aws.url);
    let out = once(
        &world,
        &[("AWS_ENDPOINT_URL_ECR", &ecr)],
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
    );
    let said = said(&out);
    assert!(out.status.success(), "{said}");
    assert!(deployed(&world).contains("newTag: v1.1.0"), "{said}");
    assert_eq!(aws.judged.asked(), ["ecr"], "{said}");
    aws.judged.assert_all_held();
    assert!(!said.contains(PASSWORD) && !said.contains(SECRET), "{said}");
}

async fn ecr_world() -> World {
    world(
        Auth::Htpasswd {
            user: "AWS".into(),
            password: PASSWORD.into(),
        },
        PushAuth::Basic("AWS".into(), PASSWORD.into()),
        &format!("aws:{REGION}"),
    )
    .await
}

/// Keys from the shared credentials file's profile, when the environment has none; a wrong
/// secret is refused by ECR, and `once` says so without writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_file_is_next_and_a_refusal_is_said() {
    needs!(Registry, Lighttpd);
    let dir = tempfile::tempdir().unwrap();
    let aws = Aws::start(dir.path()).await;
    let world = ecr_world().await;
    let ecr = format!("{}/ecr/", aws.url);
    let file = write(
        dir.path(),
        "aws-credentials",
        &format!(
            "[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = wrong\n\n[ci]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"
        ),
    );
    let file = file.to_str().unwrap();
    let env = [
        ("AWS_ENDPOINT_URL_ECR", ecr.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", file),
    ];
    let wrong = once(&world, &env, &[]);
    let said = String::from_utf8_lossy(&wrong.stderr).to_string();
    assert!(!wrong.status.success(), "{said}");
    assert!(
        said.contains("InvalidSignatureException") || said.contains("unknown access key"),
        "{said}"
    );
    assert!(
        !said.contains("wrong\n") && !said.contains(SECRET),
        "{said}"
    );
    assert!(deployed(&world).contains("newTag: v1.0.0"));
    let right = once(&world, &env, &[("AWS_PROFILE", "ci")]);
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert!(deployed(&world).contains("newTag: v1.1.0"));
    let verdicts = aws.judged.verdicts.lock().unwrap();
    assert!(verdicts.iter().any(|(_, v)| v.is_err()), "{verdicts:?}");
    assert!(verdicts.last().unwrap().1.is_ok(), "{verdicts:?}");
}

/// EKS's web identity: the projected token exchanged at STS for temporary keys, which sign
/// ECR's request with their session token. The password is kept in the state dir: a second
/// `once` asks nobody. Then the daemon, with passwords ECR says last eight seconds, renews
/// each before it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_through_web_identity_by_once_and_the_daemon_across_expiries() {
    needs!(Registry, Lighttpd);
    let dir = tempfile::tempdir().unwrap();
    let aws = Aws::start(dir.path()).await;
    *aws.password_life.lock().unwrap() = Duration::from_secs(8);
    let world = ecr_world().await;
    let token = write(dir.path(), "web-identity-token", &aws.web_identity_token());
    let (sts, ecr) = (format!("{}/sts/", aws.url), format!("{}/ecr/", aws.url));
    let env = [
        ("AWS_ROLE_ARN", test_aws::ROLE),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        ("AWS_ENDPOINT_URL_STS", &sts),
        ("AWS_ENDPOINT_URL_ECR", &ecr),
    ];
    let out = once(&world, &env, &[]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(deployed(&world).contains("newTag: v1.1.0"));
    assert_eq!(aws.judged.asked(), ["sts", "ecr"]);
    assert_kept_privately(&world);
    let again = once(&world, &env, &[]);
    assert!(again.status.success(), "{}", said(&again));
    assert_eq!(
        aws.judged.asked(),
        ["sts", "ecr"],
        "the kept password was not used"
    );
    let asked_ecr = || aws.judged.asked().iter().filter(|a| **a == "ecr").count();
    daemon_across_expiries(&world, &env, asked_ecr).await;
    aws.judged.assert_all_held();
}

/// Artifact Registry with a service account key: the JWT bearer grant at Google's token
/// endpoint, the access token as `oauth2accesstoken`'s password at the registry's token
/// service; by `once`, then by the daemon across expiries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_service_account_by_once_and_the_daemon_across_expiries() {
    needs!(Registry, Lighttpd);
    let dir = tempfile::tempdir().unwrap();
    let google = Google::start(dir.path()).await;
    *google.life.lock().unwrap() = Duration::from_secs(8);
    let world = world_behind(&google.front, "gcp").await;
    let key = write(dir.path(), "key.json", &google.key_file());
    let env = [("GOOGLE_APPLICATION_CREDENTIALS", key.to_str().unwrap())];
    // Without credentials: nothing written, and `status` says what was tried.
    let out = once(&world, &[], &[]);
    assert!(!out.status.success());
    let status = said(&world.run(&["status"]));
    assert!(
        status.contains("no Google credentials: tried GOOGLE_APPLICATION_CREDENTIALS (unset)"),
        "{status}"
    );
    // `check` says where the credentials come from, without asking the registry.
    let mut check = std::process::Command::new(harness::world::BIN);
    check.arg("check").arg("--config").arg(world.config_path());
    for var in INHERITED {
        check.env_remove(var);
    }
    check.envs(ISOLATED).envs(env);
    let checked = said(&check.output().unwrap());
    assert!(
        checked.contains(&format!(
            "gcp: Google credentials from the service account key of {}",
            harness::cloud::google::EMAIL
        )),
        "{checked}"
    );
    end_to_end(
        &world,
        &env,
        &google.judged,
        &["token", "token"],
        &google.access,
    )
    .await;
}

/// ACR with AKS's workload identity: the projected token as the client assertion at Azure
/// AD, the AD token exchanged at the registry's `/oauth2/exchange`, the refresh token as the
/// password at its `/oauth2/token`; by `once`, then by the daemon across expiries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acr_through_workload_identity_by_once_and_the_daemon_across_expiries() {
    needs!(Registry, Lighttpd);
    let dir = tempfile::tempdir().unwrap();
    let azure = Azure::start(dir.path()).await;
    *azure.life.lock().unwrap() = Duration::from_secs(8);
    let world = world_behind(&azure.front, "azure").await;
    let token = write(dir.path(), "federated-token", &azure.federated_token());
    let env = [
        ("AZURE_FEDERATED_TOKEN_FILE", token.to_str().unwrap()),
        ("AZURE_CLIENT_ID", harness::cloud::azure::CLIENT),
        ("AZURE_TENANT_ID", harness::cloud::azure::TENANT),
        ("AZURE_AUTHORITY_HOST", &azure.front.url),
    ];
    end_to_end(
        &world,
        &env,
        &azure.judged,
        &["ad", "exchange"],
        &azure.refresh,
    )
    .await;
}

/// A cloud whose sign-in hangs delays no other registry: with each cloud's token endpoint
/// never answering (AWS's STS for web identity, Google's token endpoint, Azure AD), the image
/// on a registry that needs no cloud is still committed, in time, and each cloud's image is
/// said to have failed, with nothing of its secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_cloud_does_not_delay_other_registries() {
    needs!(Registry, Lighttpd);
    let world = world(Auth::None, PushAuth::None, "env:NO_SUCH_VARIABLE_SET").await;
    let silent_url = harness::cloud::silent().await;
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "web-identity-token", "a-token");
    let key: serde_json::Value =
        serde_json::from_str(&Google::start(dir.path()).await.key_file()).unwrap();
    let mut key = key;
    key["token_uri"] = format!("{silent_url}/token").into();
    let key = write(dir.path(), "key.json", &key.to_string());
    let mut text = std::fs::read_to_string(world.config_path())
        .unwrap()
        .replace("credentials = \"env:NO_SUCH_VARIABLE_SET\"\n", "");
    for (name, host, credentials) in [
        ("ecr", "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "aws"),
        ("gar", "europe-docker.pkg.dev", "gcp"),
        ("acr", "team.azurecr.io", "azure"),
    ] {
        text.push_str(&format!(
            "\n[registries.{name}]\nprefix = \"{host}\"\napi_url = \"http://127.0.0.1:9\"\ninsecure = true\ncredentials = \"{credentials}\"\n\n[images.{name}]\nimage = \"{host}/org/api\"\n[[images.{name}.targets]]\nkind = \"kustomization\"\nfile = \"prod/kustomization.yaml\"\nname = \"{host}/org/api\"\n"
        ));
    }
    world.write_config(&text);
    let started = std::time::Instant::now();
    let out = once(
        &world,
        &[
            ("AWS_ROLE_ARN", test_aws::ROLE),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
            ("AWS_ENDPOINT_URL_STS", &silent_url),
            ("GOOGLE_APPLICATION_CREDENTIALS", key.to_str().unwrap()),
            ("AZURE_AUTHORITY_HOST", &silent_url),
            ("AZURE_TENANT_ID", harness::cloud::azure::TENANT),
            ("AZURE_CLIENT_ID", harness::cloud::azure::CLIENT),
            ("AZURE_CLIENT_SECRET", harness::cloud::azure::CLIENT_SECRET),
        ],
        &[],
    );
    let said = said(&out);
    let took = started.elapsed();
    assert!(deployed(&world).contains("newTag: v1.1.0"), "{said}");
    for timed_out in [
        "STS timed out after 10 s",
        "Google's token endpoint timed out after 10 s",
        "Azure AD timed out after 10 s",
    ] {
        assert!(said.contains(timed_out), "{timed_out}: {said}");
    }
    for secret in [
        harness::cloud::azure::CLIENT_SECRET,
        "a-token",
        "PRIVATE KEY",
    ] {
        assert!(!said.contains(secret), "{secret}: {said}");
    }
    assert!(took < Duration::from_secs(60), "{took:?}");
}

/// A hostile ECR: one that redirects to another host, one that answers a huge body, one that
/// never answers. Each fails the check with a bounded message; the keys and the signature go
/// nowhere else, and the redirect's target is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_ecr_is_bounded_and_followed_nowhere() {
    needs!(Registry, Lighttpd);
    let world = ecr_world().await;
    // Where the redirect points: it counts what reaches it.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_port = elsewhere.local_addr().unwrap().port();
    let reached = Arc::new(Mutex::new(0usize));
    let r = reached.clone();
    tokio::spawn(async move {
        while let Ok((_, _)) = elsewhere.accept().await {
            *r.lock().unwrap() += 1;
        }
    });
    let hostile = axum::Router::new()
        .route(
            "/redirect/",
            axum::routing::post(move || async move {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [("location", format!("http://127.0.0.1:{elsewhere_port}/"))],
                )
            }),
        )
        .route(
            "/huge/",
            axum::routing::post(|| async { "x".repeat(8 << 20) }),
        )
        .route(
            "/hang/",
            axum::routing::post(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, hostile).await.unwrap() });
    let keys = [
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    for (path, expected) in [
        ("redirect", "HTTP 307"),
        ("huge", "answered more than"),
        ("hang", "timed out after 10 s"),
    ] {
        let started = std::time::Instant::now();
        let out = once(
            &world,
            &[(
                "AWS_ENDPOINT_URL_ECR",
                &format!("http://127.0.0.1:{port}/{path}/"),
            )],
            &keys,
        );
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{path}: {said}");
        assert!(said.contains(expected), "{path}: {said}");
        assert!(said.len() < 20_000, "{path}: {} bytes said", said.len());
        assert!(!said.contains(SECRET), "{path}: {said}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(40),
            "{path}: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(*reached.lock().unwrap(), 0, "the redirect was followed");
    assert!(
        world
            .file_on("deploy/prod", "prod/kustomization.yaml")
            .contains("newTag: v1.0.0")
    );
}

/// Credentials a cloud's host implies are not demanded: where nothing has the cloud's
/// credentials, the registry's public repositories are read anonymously, and committed. The
/// same registry told to use them (`credentials = "azure"`) fails, saying what was tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implied_credentials_that_nothing_has_leave_public_images_readable() {
    needs!(Registry, Lighttpd);
    let kustomization = KUSTOMIZATION.replace("REGISTRY", "team.azurecr.io");
    let world = World::with_registry(
        &[("prod/kustomization.yaml", &kustomization)],
        &["deploy/prod"],
        Auth::None,
        PushAuth::None,
    )
    .await;
    world.push("org/api", "v1.0.0").await;
    world.push("org/api", "v1.1.0").await;
    let host = world.host();
    let config = world.base_config(&["prod"]).replace(
        &format!("prefix = \"{host}\""),
        "prefix = \"team.azurecr.io\"",
    ) + "\n[images.api]\nimage = \"team.azurecr.io/org/api\"\n[[images.api.targets]]\nkind = \"kustomization\"\nfile = \"prod/kustomization.yaml\"\nname = \"team.azurecr.io/org/api\"\n";
    let told = config.replace(
        "rate_limit = 100\n",
        "rate_limit = 100\ncredentials = \"azure\"\n",
    );
    world.write_config(&told);
    let out = once(&world, &[], &[]);
    let refused = said(&out);
    assert!(!out.status.success(), "{refused}");
    assert!(
        refused.contains("no Azure credentials: tried service principal"),
        "{refused}"
    );
    assert!(deployed(&world).contains("newTag: v1.0.0"));
    world.write_config(&config);
    let out = once(&world, &[], &[]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(deployed(&world).contains("newTag: v1.1.0"));
}

/// One sign-in at a time per registry: three images on one ECR registry, checked side by
/// side by one `once`, ask ECR for one password between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_on_one_registry_share_one_password() {
    needs!(Registry, Lighttpd);
    let dir = tempfile::tempdir().unwrap();
    let aws = Aws::start(dir.path()).await;
    let names = ["api", "web", "worker"];
    let files: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            (
                format!("prod/{n}/kustomization.yaml"),
                KUSTOMIZATION.replace("org/api", &format!("org/{n}")),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let world = World::with_registry(
        &refs,
        &["deploy/prod"],
        Auth::Htpasswd {
            user: "AWS".into(),
            password: PASSWORD.into(),
        },
        PushAuth::Basic("AWS".into(), PASSWORD.into()),
    )
    .await;
    let host = world.host();
    let mut config = world.base_config(&["prod"]).replace(
        "rate_limit = 100\n",
        &format!("rate_limit = 100\ncredentials = \"aws:{REGION}\"\n"),
    );
    for n in names {
        world.push(&format!("org/{n}"), "v1.0.0").await;
        world.push(&format!("org/{n}"), "v1.1.0").await;
        config.push_str(&format!(
            "\n[images.{n}]\nimage = \"{host}/org/{n}\"\n[[images.{n}.targets]]\nkind = \"kustomization\"\nfile = \"prod/{n}/kustomization.yaml\"\nname = \"{host}/org/{n}\"\n"
        ));
    }
    world.write_config(&config);
    let ecr = format!("{}/ecr/", aws.url);
    let out = once(
        &world,
        &[("AWS_ENDPOINT_URL_ECR", &ecr)],
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
    );
    assert!(out.status.success(), "{}", said(&out));
    for n in names {
        let file = world.file_on("deploy/prod", &format!("prod/{n}/kustomization.yaml"));
        assert!(file.contains("newTag: v1.1.0"), "{n}: {file}");
    }
    assert_eq!(aws.judged.asked(), ["ecr"]);
}
