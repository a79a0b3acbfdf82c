//! Registries behind a cloud's own sign-in, end to end: `credentials = "aws"` against a test
//! ECR that judges every request with the SigV4 check of `harness::aws` (held to AWS's
//! published suite in `tests/aws_signing.rs`) and the test's secret, and a real registry
//! (Debian's `docker-registry`) that accepts only the password that ECR answered.
//!
//! No AWS service can run here, so ECR's `GetAuthorizationToken` is written from its API
//! reference: `POST /` with `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.
//! GetAuthorizationToken` and `Content-Type: application/x-amz-json-1.1`, answered with
//! `authorizationData[].authorizationToken` (base64 of `AWS:password`) and `expiresAt`, and a
//! refused signature with `InvalidSignatureException`.

mod harness;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine;
use harness::world::World;
use harness::{Auth, PushAuth};

const KEY_ID: &str = "AKIDTESTECR";
const SECRET: &str = "test-secret-access-key";
const REGION: &str = "eu-west-1";
const PASSWORD: &str = "ecr-issued-password-1";

const KUSTOMIZATION: &str = "images:\n  - name: REGISTRY/org/api\n    newTag: v1.0.0\n";

/// What the test ECR received: per request, whether its signature held, or why not.
#[derive(Default)]
struct Judged {
    verdicts: Vec<Result<(), String>>,
}

/// A test ECR on 127.0.0.1; its url and what it judged.
async fn ecr() -> (String, Arc<Mutex<Judged>>) {
    let judged = Arc::new(Mutex::new(Judged::default()));
    let j = judged.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let j = j.clone();
            async move {
                let pairs: Vec<(String, String)> = headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let mut verdict = harness::aws::verify(
                    method.as_str(),
                    path,
                    &pairs,
                    &body,
                    SECRET,
                    REGION,
                    "ecr",
                );
                let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                if verdict.is_ok()
                    && (method != Method::POST
                        || header("x-amz-target")
                            != Some("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")
                        || header("content-type") != Some("application/x-amz-json-1.1"))
                {
                    verdict = Err(format!(
                        "not a GetAuthorizationToken request: {method} {:?} {:?}",
                        header("x-amz-target"),
                        header("content-type")
                    ));
                }
                let ok = verdict.is_ok();
                j.lock().unwrap().verdicts.push(verdict);
                if !ok {
                    return (
                        StatusCode::BAD_REQUEST,
                        r#"{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match the signature you provided."}"#.to_string(),
                    );
                }
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("AWS:{PASSWORD}"));
                let expires = jiff::Timestamp::now().as_second() + 12 * 3600;
                (
                    StatusCode::OK,
                    format!(
                        r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{expires}.0,"proxyEndpoint":"https://123456789012.dkr.ecr.{REGION}.amazonaws.com"}}]}}"#
                    ),
                )
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{port}"), judged)
}

async fn world() -> World {
    let world = World::with_registry(
        &[("prod/kustomization.yaml", KUSTOMIZATION)],
        &["deploy/prod"],
        Auth::Htpasswd {
            user: "AWS".into(),
            password: PASSWORD.into(),
        },
        PushAuth::Basic("AWS".into(), PASSWORD.into()),
    )
    .await;
    world.push("org/api", "v1.0.0").await;
    world.push("org/api", "v1.1.0").await;
    let host = world.host();
    let mut config = world.base_config(&["prod"]).replace(
        "rate_limit = 100\n",
        &format!("rate_limit = 100\ncredentials = \"aws:{REGION}\"\n"),
    );
    config.push_str(&format!(
        "\n[images.api]\nimage = \"{host}/org/api\"\n[[images.api.targets]]\nkind = \"kustomization\"\nfile = \"prod/kustomization.yaml\"\nname = \"{host}/org/api\"\n"
    ));
    world.write_config(&config);
    world
}

/// `once` with only `env` for AWS: the environment's own AWS variables are not inherited.
fn once(world: &World, ecr: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut command = world.command(&["once"]);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
    ] {
        command.env_remove(var);
    }
    command.env("AWS_ENDPOINT_URL_ECR", ecr).env(
        "AWS_SHARED_CREDENTIALS_FILE",
        world.dir.path().join("no-aws-credentials"),
    );
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

/// Keys from the environment: ECR is asked with a signature AWS would accept, and the
/// password it answers reaches the registry and nothing else; the release is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_passwords_from_keys_in_the_environment_commit_a_release() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let (url, judged) = ecr().await;
    let out = once(
        &world,
        &url,
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    let file = world.file_on("deploy/prod", "prod/kustomization.yaml");
    assert!(file.contains("newTag: v1.1.0"), "{file}\n{said}");
    let verdicts = &judged.lock().unwrap().verdicts;
    assert!(!verdicts.is_empty(), "ECR was never asked:\n{said}");
    for v in verdicts {
        assert!(v.is_ok(), "{v:?}");
    }
    assert!(!said.contains(PASSWORD) && !said.contains(SECRET), "{said}");
}

/// Keys from the shared credentials file's profile, when the environment has none; a wrong
/// secret is refused by ECR, and `once` says so without writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_file_is_next_and_a_refusal_is_said() {
    needs!(Registry, Lighttpd);
    let world = world().await;
    let (url, judged) = ecr().await;
    let file = world.dir.path().join("aws-credentials");
    std::fs::write(
        &file,
        format!("[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = wrong\n\n[ci]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let wrong = once(&world, &url, &[("AWS_SHARED_CREDENTIALS_FILE", file)]);
    let said = String::from_utf8_lossy(&wrong.stderr).to_string();
    assert!(!wrong.status.success(), "{said}");
    assert!(said.contains("InvalidSignatureException"), "{said}");
    assert!(
        !said.contains("wrong\n") && !said.contains(SECRET),
        "{said}"
    );
    assert!(
        world
            .file_on("deploy/prod", "prod/kustomization.yaml")
            .contains("newTag: v1.0.0")
    );
    let right = once(
        &world,
        &url,
        &[("AWS_SHARED_CREDENTIALS_FILE", file), ("AWS_PROFILE", "ci")],
    );
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert!(
        world
            .file_on("deploy/prod", "prod/kustomization.yaml")
            .contains("newTag: v1.1.0")
    );
    let verdicts = &judged.lock().unwrap().verdicts;
    assert!(verdicts.iter().any(|v| v.is_err()), "{verdicts:?}");
    assert!(verdicts.last().unwrap().is_ok(), "{verdicts:?}");
}

/// A hostile ECR: one that redirects to another host, one that answers a huge body, one that
/// never answers. Each fails the check with a bounded message; the keys and the signature go
/// nowhere else, and the redirect's target is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_ecr_is_bounded_and_followed_nowhere() {
    needs!(Registry, Lighttpd);
    let world = world().await;
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
        ("hang", "did not answer within 10s"),
    ] {
        let started = std::time::Instant::now();
        let out = once(&world, &format!("http://127.0.0.1:{port}/{path}/"), &keys);
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
