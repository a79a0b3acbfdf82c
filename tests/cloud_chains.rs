//! The clouds' credential chains, link by link, against the test clouds of `harness::cloud`
//! (each written from its cloud's API reference, each judging what it receives):
//!
//! - per chain, a table: with a link and every later one set up, the link is the one used,
//!   and no later link's endpoint is asked;
//! - per chain, the message when no link has credentials: each link, in order, and why;
//! - per provider, hostile endpoints (one that hangs, one that answers a huge body, one that
//!   redirects to another host, one that gives an absurd expiry): each bounded, nothing sent
//!   where the redirect points, the expiry held to twelve hours.

mod harness;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use harness::cloud::aws::{self as test_aws, Aws};
use harness::cloud::azure::{self as test_azure, Azure};
use harness::cloud::google::Google;
use harness::cloud::write;
use image_updater::secrets::cloud::{LONGEST, Vars, aws, azure, gcp};
use image_updater::secrets::{Credential, Registry};

const ECR_HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// A directory for the files a chain reads, and the variables that keep the chain inside the
/// test: no HOME, the shared files somewhere empty.
fn isolated(dir: &Path) -> Vec<(String, String)> {
    let missing = |name: &str| dir.join(name).to_str().unwrap().to_string();
    vec![
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            missing("no-credentials"),
        ),
        ("AWS_CONFIG_FILE".into(), missing("no-config")),
        ("CLOUDSDK_CONFIG".into(), missing("no-gcloud")),
    ]
}

/// The variables of link `first` and every later one, inside the test.
fn from_link(
    dir: &Path,
    links: &[(&str, Vec<(String, String)>)],
    first: usize,
) -> Vec<(String, String)> {
    let mut pairs = isolated(dir);
    for (_, link) in &links[first..] {
        pairs.extend(link.iter().cloned());
    }
    pairs
}

fn vars(pairs: &[(String, String)]) -> Vars {
    Vars::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// The AWS links, each set up with what it needs, in the chain's order.
fn aws_links(aws: &Aws, dir: &Path) -> Vec<(&'static str, Vec<(String, String)>)> {
    let token_file = write(dir, "web-identity-token", &aws.web_identity_token());
    let credentials = write(
        dir,
        "aws-credentials",
        &format!(
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = x\n[ci]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            test_aws::KEY_ID,
            test_aws::SECRET
        ),
    );
    let config = write(
        dir,
        "aws-config",
        &format!(
            "[profile ci]\nregion = eu-west-1\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            test_aws::KEY_ID,
            test_aws::SECRET
        ),
    );
    let agent_token = write(dir, "agent-token", test_aws::CONTAINER_TOKEN);
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    vec![
        (
            "the environment",
            vec![
                p("AWS_ACCESS_KEY_ID", test_aws::KEY_ID),
                p("AWS_SECRET_ACCESS_KEY", test_aws::SECRET),
            ],
        ),
        (
            "aws-credentials profile ci",
            vec![
                p("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
                p("AWS_PROFILE", "ci"),
            ],
        ),
        (
            "aws-config profile ci",
            vec![
                p("AWS_CONFIG_FILE", config.to_str().unwrap()),
                p("AWS_PROFILE", "ci"),
            ],
        ),
        (
            "web identity",
            vec![
                p("AWS_ROLE_ARN", test_aws::ROLE),
                p("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
                p("AWS_ENDPOINT_URL_STS", &format!("{}/sts/", aws.url)),
            ],
        ),
        (
            "the container credentials endpoint",
            vec![
                p(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    &format!("{}/container/credentials", aws.url),
                ),
                p(
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    agent_token.to_str().unwrap(),
                ),
            ],
        ),
        (
            "instance metadata (role image-updater-instance)",
            vec![p("AWS_EC2_METADATA_SERVICE_ENDPOINT", &aws.url)],
        ),
    ]
}

/// With link N and every later one set up, link N's keys sign the ECR request (checked by
/// the test ECR with that key's secret and session token), and no later link is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_links_are_taken_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let aws = Aws::start(dir.path()).await;
    let links = aws_links(&aws, dir.path());
    let network = [
        (3, vec!["sts"]),
        (4, vec!["container"]),
        (5, vec!["imds-token", "imds-role", "imds-keys"]),
    ];
    for first in 0..links.len() {
        let mut pairs = from_link(dir.path(), &links, first);
        pairs.push(("AWS_ENDPOINT_URL_ECR".into(), format!("{}/ecr/", aws.url)));
        let before = aws.judged.asked().len();
        let found = aws::keys::find(&vars(&pairs), test_aws::REGION)
            .await
            .unwrap();
        assert!(
            found.from.contains(links[first].0),
            "link {first}: keys from {}",
            found.from
        );
        let lease = aws::lease(None, None, ECR_HOST, &vars(&pairs))
            .await
            .unwrap();
        assert_eq!(
            lease.credential,
            Credential::Basic {
                username: "AWS".into(),
                password: image_updater::secrets::Secret::new(test_aws::PASSWORD)
            }
        );
        let asked: Vec<&str> = aws.judged.asked()[before..].to_vec();
        let expected: Vec<&str> = network
            .iter()
            .find(|(n, _)| *n == first)
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        // The chain runs twice (find, then lease): the link's endpoints twice, then ECR.
        let mut twice = expected.clone();
        twice.extend(expected.iter().copied());
        twice.push("ecr");
        assert_eq!(asked, twice, "link {first}");
    }
    aws.judged.assert_all_held();
}

/// A role in the config (`aws:REGION:ROLE_ARN`) is assumed with the keys found, through
/// STS's `AssumeRole` signed by them; the role's temporary keys sign ECR's request.
#[tokio::test]
async fn a_role_is_assumed_with_the_keys_found() {
    let dir = tempfile::tempdir().unwrap();
    let aws = Aws::start(dir.path()).await;
    let mut pairs = isolated(dir.path());
    pairs.extend([
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            test_aws::KEY_ID.to_string(),
        ),
        ("AWS_SECRET_ACCESS_KEY".into(), test_aws::SECRET.into()),
        ("AWS_ENDPOINT_URL_STS".into(), format!("{}/sts/", aws.url)),
        ("AWS_ENDPOINT_URL_ECR".into(), format!("{}/ecr/", aws.url)),
    ]);
    let lease = aws::lease(None, Some(test_aws::ROLE), ECR_HOST, &vars(&pairs))
        .await
        .unwrap();
    assert!(
        matches!(lease.credential, Credential::Basic { ref username, .. } if username == "AWS")
    );
    assert_eq!(aws.judged.asked(), ["sts", "ecr"]);
    aws.judged.assert_all_held();
    // A key STS does not know is refused, and said.
    pairs.push(("AWS_ACCESS_KEY_ID".into(), "AKIDUNKNOWN".into()));
    let error = aws::lease(None, Some(test_aws::ROLE), ECR_HOST, &vars(&pairs))
        .await
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("STS refused AssumeRole"),
        "{error}"
    );
    assert!(
        error.to_string().contains("SignatureDoesNotMatch"),
        "{error}"
    );
}

/// ECR Public: its own API (`ecr-public`, in us-east-1), signed as such, answering an object.
#[tokio::test]
async fn ecr_public_has_its_own_token_api() {
    let dir = tempfile::tempdir().unwrap();
    let aws = Aws::start(dir.path()).await;
    let mut pairs = isolated(dir.path());
    pairs.extend([
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            test_aws::KEY_ID.to_string(),
        ),
        ("AWS_SECRET_ACCESS_KEY".into(), test_aws::SECRET.into()),
        (
            "AWS_ENDPOINT_URL_ECR_PUBLIC".into(),
            format!("{}/ecr-public/", aws.url),
        ),
    ]);
    let lease = aws::lease(Some("eu-west-1"), None, "public.ecr.aws", &vars(&pairs))
        .await
        .unwrap();
    assert!(
        matches!(lease.credential, Credential::Basic { ref username, .. } if username == "AWS")
    );
    assert_eq!(aws.judged.asked(), ["ecr-public"]);
    aws.judged.assert_all_held();
}

#[tokio::test]
async fn no_aws_credentials_says_each_link_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = isolated(dir.path());
    pairs.push((
        "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
        harness::cloud::silent().await,
    ));
    let started = Instant::now();
    let Err(error) = aws::keys::find(&vars(&pairs), "eu-west-1").await else {
        panic!("keys from nowhere");
    };
    let d = dir.path().display();
    assert_eq!(
        error.to_string(),
        format!(
            "no AWS credentials: tried env (AWS_ACCESS_KEY_ID unset), {d}/no-credentials (no such file), \
             {d}/no-config (no such file), web identity (AWS_ROLE_ARN unset), container endpoint (unset), \
             IMDS (timed out after 1 s); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, \
             or run where a role is given"
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Switched off, IMDS is not asked at all.
    pairs.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    let error = aws::keys::find(&vars(&pairs), "eu-west-1")
        .await
        .err()
        .unwrap();
    assert!(
        error
            .to_string()
            .contains("IMDS (AWS_EC2_METADATA_DISABLED)"),
        "{error}"
    );
}

/// A link that is set up and fails ends the chain with its reason: a refused web identity
/// token does not fall through to the instance's role.
#[tokio::test]
async fn a_failing_link_does_not_fall_through() {
    let dir = tempfile::tempdir().unwrap();
    let aws = Aws::start(dir.path()).await;
    let wrong = write(dir.path(), "wrong-token", &aws.oidc.token("someone-else"));
    let mut pairs = isolated(dir.path());
    pairs.extend([
        ("AWS_ROLE_ARN".to_string(), test_aws::ROLE.to_string()),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
            wrong.to_str().unwrap().into(),
        ),
        ("AWS_ENDPOINT_URL_STS".into(), format!("{}/sts/", aws.url)),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), aws.url.clone()),
    ]);
    let error = aws::keys::find(&vars(&pairs), "eu-west-1")
        .await
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("InvalidIdentityToken"),
        "{error}"
    );
    assert_eq!(aws.judged.asked(), ["sts"]);
    // Plain HTTP to a host that is not an agent's is refused before anything is sent.
    let error = aws::keys::find(
        &Vars::from_pairs([(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://example.com/creds",
        )]),
        "eu-west-1",
    )
    .await
    .err()
    .unwrap();
    assert!(error.to_string().contains("refused"), "{error}");
}

/// The Google links, in the chain's order.
fn google_links(google: &Google, dir: &Path) -> Vec<(&'static str, Vec<(String, String)>)> {
    let key = write(dir, "key.json", &google.key_file());
    let gcloud = dir.join("gcloud");
    std::fs::create_dir_all(&gcloud).unwrap();
    write(
        &gcloud,
        "application_default_credentials.json",
        &google.user_file(),
    );
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    vec![
        (
            "service account key",
            vec![p("GOOGLE_APPLICATION_CREDENTIALS", key.to_str().unwrap())],
        ),
        (
            "user credentials",
            vec![p("CLOUDSDK_CONFIG", gcloud.to_str().unwrap())],
        ),
        (
            "metadata server",
            vec![p("GCE_METADATA_HOST", &google.front.host)],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_links_are_taken_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let google = Google::start(dir.path()).await;
    let links = google_links(&google, dir.path());
    for (first, expected) in [(0, "token"), (1, "token"), (2, "metadata")] {
        let pairs = from_link(dir.path(), &links, first);
        let before = google.judged.asked().len();
        let lease = gcp::lease(&vars(&pairs)).await.unwrap();
        let token = gcp::access_token(&vars(&pairs)).await.unwrap();
        assert!(
            token.from.contains(links[first].0),
            "link {first}: {}",
            token.from
        );
        let Credential::Basic { username, password } = lease.credential else {
            panic!("not basic");
        };
        assert_eq!(username, "oauth2accesstoken");
        assert!(google.access.valid(password.expose()));
        assert_eq!(
            google.judged.asked()[before..],
            [expected, expected],
            "link {first}"
        );
    }
    google.judged.assert_all_held();
}

/// Workload identity federation: the pool's token exchanged at STS, then, when the file
/// says so, for the service account's token at IAM Credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_external_accounts_exchange_the_pool_token() {
    let dir = tempfile::tempdir().unwrap();
    let google = Google::start(dir.path()).await;
    let token_file = write(
        dir.path(),
        "pool-token",
        &google.oidc.token(harness::cloud::google::AUDIENCE),
    );
    for (impersonate, asked) in [(false, vec!["sts"]), (true, vec!["sts", "iam"])] {
        let file = write(
            dir.path(),
            "external.json",
            &google.external_account_file(&token_file, impersonate),
        );
        let before = google.judged.asked().len();
        let pairs = [(
            "GOOGLE_APPLICATION_CREDENTIALS".to_string(),
            file.to_str().unwrap().to_string(),
        )];
        let lease = gcp::lease(&vars(&pairs)).await.unwrap();
        let Credential::Basic { password, .. } = lease.credential else {
            panic!()
        };
        assert!(google.access.valid(password.expose()));
        assert_eq!(google.judged.asked()[before..], asked);
    }
    google.judged.assert_all_held();
    // A pool token for another audience is refused by STS, and said.
    let wrong = write(dir.path(), "pool-token", &google.oidc.token("another-pool"));
    let file = write(
        dir.path(),
        "external.json",
        &google.external_account_file(&wrong, false),
    );
    let pairs = [(
        "GOOGLE_APPLICATION_CREDENTIALS".to_string(),
        file.to_str().unwrap().to_string(),
    )];
    let error = gcp::lease(&vars(&pairs)).await.err().unwrap();
    assert!(
        error
            .to_string()
            .contains("does not match the expected audience"),
        "{error}"
    );
}

#[tokio::test]
async fn no_google_credentials_says_each_link_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = isolated(dir.path());
    let silent = harness::cloud::silent().await;
    pairs.push((
        "GCE_METADATA_HOST".into(),
        silent.trim_start_matches("http://").into(),
    ));
    let error = gcp::lease(&vars(&pairs)).await.err().unwrap();
    let d = dir.path().display();
    assert_eq!(
        error.to_string(),
        format!(
            "no Google credentials: tried GOOGLE_APPLICATION_CREDENTIALS (unset), \
             {d}/no-gcloud/application_default_credentials.json (no such file), metadata server \
             (timed out after 1 s); set GOOGLE_APPLICATION_CREDENTIALS to a key or an external \
             account file, or run on GCE, GKE or Cloud Run with a service account"
        )
    );
}

/// A metadata server that does not say `Metadata-Flavor: Google` is not Google's.
#[tokio::test]
async fn a_metadata_server_must_say_it_is_googles() {
    let app =
        axum::Router::new().fallback(|| async { r#"{"access_token":"stolen","expires_in":3600}"# });
    let (url, _task) = harness::cloud::serve(app).await;
    let error = gcp::lease(&Vars::from_pairs([
        ("GCE_METADATA_HOST", url.trim_start_matches("http://")),
        ("CLOUDSDK_CONFIG", "/nonexistent"),
    ]))
    .await
    .err()
    .unwrap();
    assert!(error.to_string().contains("Metadata-Flavor"), "{error}");
}

fn azure_links(azure: &Azure, dir: &Path) -> Vec<(&'static str, Vec<(String, String)>)> {
    let token = write(dir, "federated-token", &azure.federated_token());
    let p = |k: &str, v: &str| (k.to_string(), v.to_string());
    vec![
        (
            "the service principal",
            vec![p("AZURE_CLIENT_SECRET", test_azure::CLIENT_SECRET)],
        ),
        (
            "workload identity",
            vec![p("AZURE_FEDERATED_TOKEN_FILE", token.to_str().unwrap())],
        ),
        (
            "the managed identity",
            vec![p("AZURE_POD_IDENTITY_AUTHORITY_HOST", &azure.front.url)],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_links_are_taken_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let azure = Azure::start(dir.path()).await;
    let links = azure_links(&azure, dir.path());
    for (first, expected) in [(0, "ad"), (1, "ad"), (2, "imds")] {
        let mut pairs = from_link(dir.path(), &links, first);
        pairs.push(("AZURE_AUTHORITY_HOST".into(), azure.front.url.clone()));
        if first < 2 {
            pairs.push(("AZURE_TENANT_ID".into(), test_azure::TENANT.into()));
            pairs.push(("AZURE_CLIENT_ID".into(), test_azure::CLIENT.into()));
        }
        let before = azure.judged.asked().len();
        let token = azure::ad_token(None, &vars(&pairs)).await.unwrap();
        assert!(
            token.from.contains(links[first].0),
            "link {first}: {}",
            token.from
        );
        let registry = Registry {
            host: &azure.front.host,
            base_url: &azure.front.url,
        };
        let lease = azure::lease(None, registry, &vars(&pairs)).await.unwrap();
        let Credential::Basic { username, password } = lease.credential else {
            panic!()
        };
        assert_eq!(username, test_azure::ACR_USER);
        assert!(azure.refresh.valid(password.expose()));
        assert_eq!(
            azure.judged.asked()[before..],
            [expected, expected, "exchange"],
            "link {first}"
        );
    }
    // A user-assigned identity is asked for by the client id in the config.
    let pairs = [(
        "AZURE_POD_IDENTITY_AUTHORITY_HOST".to_string(),
        azure.front.url.clone(),
    )];
    let token = azure::ad_token(Some(test_azure::MANAGED), &vars(&pairs))
        .await
        .unwrap();
    assert!(token.from.contains(test_azure::MANAGED), "{}", token.from);
    azure.judged.assert_all_held();
}

#[tokio::test]
async fn no_azure_credentials_says_each_link_in_order() {
    let pairs = [(
        "AZURE_POD_IDENTITY_AUTHORITY_HOST".to_string(),
        harness::cloud::silent().await,
    )];
    let error = azure::ad_token(None, &vars(&pairs)).await.err().unwrap();
    assert_eq!(
        error.to_string(),
        "no Azure credentials: tried service principal (AZURE_CLIENT_SECRET unset), workload \
         identity (AZURE_FEDERATED_TOKEN_FILE unset), managed identity (timed out after 1 s); set \
         AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE, \
         or run with a managed identity"
    );
}

/// Hostile endpoints for every provider's token exchange, in parallel: each bounded in
/// time and size, none followed elsewhere, an absurd expiry held to twelve hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cloud_endpoints_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_url = format!("http://{}/", elsewhere.local_addr().unwrap());
    let r = reached.clone();
    tokio::spawn(async move {
        while elsewhere.accept().await.is_ok() {
            r.fetch_add(1, Ordering::SeqCst);
        }
    });
    let absurd_token = || r#"{"access_token":"t","expires_in":99999999999999,"refresh_token":"x.eyJleHAiOjk5OTk5OTk5OTk5OTl9.y"}"#;
    let location = elsewhere_url.clone();
    let app = axum::Router::new().route(
        "/{kind}/{*rest}",
        axum::routing::any(
            move |axum::extract::Path((kind, _rest)): axum::extract::Path<(String, String)>| {
                let location = location.clone();
                async move {
                    use axum::response::IntoResponse;
                    match kind.as_str() {
                        "hang" => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            "late".into_response()
                        }
                        "huge" => "x".repeat(8 << 20).into_response(),
                        "redirect" => (
                            axum::http::StatusCode::TEMPORARY_REDIRECT,
                            [("location", location)],
                        )
                            .into_response(),
                        _ => ([("metadata-flavor", "Google")], absurd_token()).into_response(),
                    }
                }
            },
        ),
    );
    let (url, _task) = harness::cloud::serve(app).await;
    let google_key = {
        let google = Google::start(dir.path()).await;
        google.key_file()
    };
    let mut cases = Vec::new();
    for kind in ["hang", "huge", "redirect", "absurd"] {
        let base = format!("{url}/{kind}/x");
        // Google: the key file's token endpoint.
        let mut key: serde_json::Value = serde_json::from_str(&google_key).unwrap();
        key["token_uri"] = format!("{base}/token").into();
        let file = write(dir.path(), &format!("key-{kind}.json"), &key.to_string());
        let google = vec![(
            "GOOGLE_APPLICATION_CREDENTIALS".to_string(),
            file.to_str().unwrap().to_string(),
        )];
        // Azure: the authority host, with a service principal.
        let azure = vec![
            ("AZURE_AUTHORITY_HOST".to_string(), base.clone()),
            ("AZURE_TENANT_ID".into(), test_azure::TENANT.into()),
            ("AZURE_CLIENT_ID".into(), test_azure::CLIENT.into()),
            (
                "AZURE_CLIENT_SECRET".into(),
                test_azure::CLIENT_SECRET.into(),
            ),
        ];
        // AWS: STS for web identity.
        let token = write(dir.path(), "token", "a-token");
        let aws = vec![
            ("AWS_ROLE_ARN".to_string(), test_aws::ROLE.to_string()),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
                token.to_str().unwrap().into(),
            ),
            ("AWS_ENDPOINT_URL_STS".into(), format!("{base}/sts")),
            ("AWS_SHARED_CREDENTIALS_FILE".into(), "/nonexistent".into()),
            ("AWS_CONFIG_FILE".into(), "/nonexistent".into()),
        ];
        cases.push((kind, "gcp", google));
        cases.push((kind, "azure", azure));
        cases.push((kind, "aws", aws));
    }
    let registry_url = format!("{url}/absurd/acr");
    let results = futures_util::future::join_all(cases.into_iter().map(|(kind, cloud, pairs)| {
        let registry_url = registry_url.clone();
        async move {
            let started = Instant::now();
            let v = vars(&pairs);
            let result = match cloud {
                "gcp" => gcp::lease(&v).await.map(|l| l.renew_at),
                "azure" => {
                    let registry = Registry {
                        host: "127.0.0.1",
                        base_url: &registry_url,
                    };
                    azure::lease(None, registry, &v).await.map(|l| l.renew_at)
                }
                _ => aws::keys::find(&v, "eu-west-1")
                    .await
                    .map(|_| SystemTime::now()),
            };
            (
                kind,
                cloud,
                result.map_err(|e| e.to_string()),
                started.elapsed(),
            )
        }
    }))
    .await;
    let said = Mutex::new(Vec::new());
    for (kind, cloud, result, took) in results {
        said.lock()
            .unwrap()
            .push(format!("{cloud} {kind}: {result:?} in {took:?}"));
        assert!(
            took < Duration::from_secs(15),
            "{cloud} {kind} took {took:?}"
        );
        match (kind, &result) {
            ("hang", Err(e)) => assert!(e.contains("timed out after 10 s"), "{cloud}: {e}"),
            ("huge", Err(e)) => {
                assert!(e.contains("answered more than 65536 bytes"), "{cloud}: {e}")
            }
            ("redirect", Err(e)) => assert!(
                e.contains("a redirect, which is not followed"),
                "{cloud}: {e}"
            ),
            ("absurd", Ok(renew_at)) => {
                assert!(
                    *renew_at <= SystemTime::now() + LONGEST,
                    "{cloud}: {renew_at:?}"
                )
            }
            // STS answers JSON, not its XML: the keys are not there.
            ("absurd", Err(e)) if cloud == "aws" => assert!(e.contains("no AccessKeyId"), "{e}"),
            _ => panic!("{cloud} {kind}: {result:?}"),
        }
        if let Err(e) = &result {
            assert!(e.len() < 1000, "{cloud} {kind}: {} bytes", e.len());
            assert!(
                !e.contains(test_azure::CLIENT_SECRET) && !e.contains("a-token"),
                "{e}"
            );
        }
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "a redirect was followed: {:?}",
        said.lock().unwrap()
    );
}
