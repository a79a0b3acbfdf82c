//! Test servers for the clouds' sign-ins. No cloud service can run here, so each endpoint is
//! written from its cloud's published API reference, and each **judges** what it receives
//! against that reference: the SigV4 signature recomputed with the test's secret (the check of
//! `harness::aws`, itself held to AWS's published suite), the signature and claims of Google's
//! service account JWT and of the web identity and federated tokens, Azure's client assertion,
//! the headers the metadata services demand. A request that fails is refused as the cloud
//! would refuse it, and its verdict is kept for the test to read.
//!
//! References: AWS STS `AssumeRoleWithWebIdentity` (Query API, XML answer), ECR and ECR Public
//! `GetAuthorizationToken` (JSON 1.1), the ECS/EKS container credentials endpoint, IMDSv2
//! (`PUT /latest/api/token`, `X-aws-ec2-metadata-token`); Google's OAuth 2.0 token endpoint
//! (JWT bearer grant, RFC 7523; refresh grant), STS `v1/token` (RFC 8693 token exchange), IAM
//! Credentials `generateAccessToken`, the metadata server (`Metadata-Flavor: Google`); Azure AD
//! v2 token endpoint (client credentials with a secret or an RFC 7523 client assertion), IMDS
//! `/metadata/identity/oauth2/token` (`Metadata: true`), ACR's `/oauth2/exchange` and
//! `/oauth2/token`.
//!
//! Google's and Azure's registries are a real `docker-registry` in token mode behind a
//! [`Front`]: the cloud's token service on the registry's own host, as Artifact Registry and
//! ACR have it, which accepts only a password its cloud issued and that has not expired, and
//! forwards every other request to the registry as it is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::{Auth, TokenSettings, issuer_keys, sign};

/// What a test server judged: per request, the endpoint and whether it held, or why not.
#[derive(Default)]
pub struct Judged {
    pub verdicts: Mutex<Vec<(&'static str, Result<(), String>)>>,
}

impl Judged {
    /// Keeps the verdict; true when it held.
    pub fn judge(&self, endpoint: &'static str, verdict: Result<(), String>) -> bool {
        let ok = verdict.is_ok();
        self.verdicts.lock().unwrap().push((endpoint, verdict));
        ok
    }

    /// The endpoints asked, in order.
    pub fn asked(&self) -> Vec<&'static str> {
        self.verdicts
            .lock()
            .unwrap()
            .iter()
            .map(|(e, _)| *e)
            .collect()
    }

    /// Panics with every verdict that did not hold.
    pub fn assert_all_held(&self) {
        let verdicts = self.verdicts.lock().unwrap();
        let bad: Vec<_> = verdicts.iter().filter(|(_, v)| v.is_err()).collect();
        assert!(bad.is_empty(), "refused: {bad:#?}");
    }
}

/// Tokens a test cloud issued, and until when each is good.
#[derive(Default)]
pub struct Issued {
    live: Mutex<HashMap<String, Instant>>,
    pub count: AtomicUsize,
    /// Uses of a token after its expiry: a client that renews in time makes none.
    pub expired_uses: AtomicUsize,
}

impl Issued {
    pub fn issue(&self, prefix: &str, life: Duration) -> String {
        let n = self.count.fetch_add(1, Ordering::SeqCst);
        let token = format!("{prefix}-{n}-{:016x}", fastrand::u64(..));
        self.live
            .lock()
            .unwrap()
            .insert(token.clone(), Instant::now() + life);
        token
    }

    /// Takes a token issued elsewhere as one of these.
    pub fn accept(&self, token: &str, life: Duration) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.live
            .lock()
            .unwrap()
            .insert(token.to_string(), Instant::now() + life);
    }

    pub fn valid(&self, token: &str) -> bool {
        match self.live.lock().unwrap().get(token) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                self.expired_uses.fetch_add(1, Ordering::SeqCst);
                false
            }
            None => false,
        }
    }

    pub fn issued(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

fn openssl(args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A key pair made by openssl: the private key's PEM (PKCS#8) and a key to verify with.
pub fn key_pair(dir: &Path, name: &str, rsa: bool) -> (String, jsonwebtoken::DecodingKey) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let p = private.to_str().unwrap();
    if rsa {
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            p,
        ]);
    } else {
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            p,
        ]);
    }
    openssl(&[
        "pkey",
        "-in",
        p,
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    let public_pem = std::fs::read(&public).unwrap();
    let decoding = if rsa {
        jsonwebtoken::DecodingKey::from_rsa_pem(&public_pem).unwrap()
    } else {
        jsonwebtoken::DecodingKey::from_ec_pem(&public_pem).unwrap()
    };
    (std::fs::read_to_string(&private).unwrap(), decoding)
}

/// An OpenID Connect issuer, as a Kubernetes cluster's service account issuer is: it signs
/// the projected tokens that web identity and workload identity present.
pub struct Oidc {
    key: jsonwebtoken::EncodingKey,
    verify: jsonwebtoken::DecodingKey,
}

pub const OIDC_ISSUER: &str = "https://oidc.test.example";

impl Oidc {
    pub fn new(dir: &Path) -> Oidc {
        let (pem, verify) = key_pair(dir, "oidc", false);
        Oidc {
            key: jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            verify,
        }
    }

    /// A token for `audience`, as the kubelet projects it into a pod.
    pub fn token(&self, audience: &str) -> String {
        let now = jiff::Timestamp::now().as_second();
        let claims = serde_json::json!({
            "iss": OIDC_ISSUER, "sub": "system:serviceaccount:gitops:image-updater",
            "aud": [audience], "iat": now, "exp": now + 3600,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &self.key,
        )
        .unwrap()
    }

    /// Whether `token` is this issuer's, for `audience`, and unexpired.
    pub fn check(&self, token: &str, audience: &str) -> Result<(), String> {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[OIDC_ISSUER]);
        jsonwebtoken::decode::<serde_json::Value>(token, &self.verify, &validation)
            .map(|_| ())
            .map_err(|e| format!("the OIDC token does not hold: {e}"))
    }
}

/// Reads an `application/x-www-form-urlencoded` body.
pub fn form(body: &[u8]) -> HashMap<String, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded_pairs(body);
    pairs.into_iter().collect()
}

fn serde_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let url = reqwest::Url::parse(&format!("http://x/?{text}")).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `Authorization: Basic` of a request, decoded.
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A server on 127.0.0.1 for `app`; its url.
pub async fn serve(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://127.0.0.1:{port}"), task)
}

/// A server that takes connections and never answers; its url.
pub async fn silent() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

/// Decides whether the Basic credentials a registry's token service received are good.
pub type Accept = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// A cloud registry's front: its token service at `realm_path` on the registry's own host,
/// which gives pull tokens for two seconds to a password `accept` takes, and every other
/// request forwarded to a real `docker-registry` in token mode.
pub struct Front {
    pub url: String,
    pub host: String,
    pub settings: TokenSettings,
    key: Arc<jsonwebtoken::EncodingKey>,
    cert_der_b64: String,
    upstream: Arc<OnceLock<String>>,
    /// Requests the token service refused.
    pub refused: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
    _task: tokio::task::JoinHandle<()>,
}

impl Front {
    /// The front with the cloud's own routes `cloud` beside the token service.
    pub async fn start(realm_path: &'static str, accept: Accept, cloud: axum::Router) -> Front {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert, cert_der_b64) = issuer_keys(dir.path());
        let key = Arc::new(key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let host = format!("127.0.0.1:{port}");
        let settings = TokenSettings {
            realm: format!("http://{host}{realm_path}"),
            service: host.clone(),
            issuer: "test-cloud".into(),
            cert,
        };
        let upstream: Arc<OnceLock<String>> = Arc::default();
        let refused = Arc::new(AtomicUsize::new(0));
        let (k, c, s, r) = (
            key.clone(),
            cert_der_b64.clone(),
            settings.clone(),
            refused.clone(),
        );
        let token = move |headers: HeaderMap, uri: Uri| {
            let (k, c, s, r, accept) = (k.clone(), c.clone(), s.clone(), r.clone(), accept.clone());
            async move {
                let query = form(uri.query().unwrap_or("").as_bytes());
                let good = basic(&headers).is_some_and(|(u, p)| accept(&u, &p));
                if !good {
                    r.fetch_add(1, Ordering::SeqCst);
                    return (StatusCode::UNAUTHORIZED, r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_string());
                }
                let access: Vec<serde_json::Value> = query
                    .get("scope")
                    .and_then(|scope| {
                        let mut parts = scope.splitn(3, ':');
                        let (kind, name) = (parts.next()?, parts.next()?);
                        Some(serde_json::json!({"type": kind, "name": name, "actions": ["pull"]}))
                    })
                    .into_iter()
                    .collect();
                let token = sign(&k, &c, &s.issuer, "cloud-user", &s.service, access);
                (
                    StatusCode::OK,
                    serde_json::json!({"token": token, "access_token": token, "expires_in": 2})
                        .to_string(),
                )
            }
        };
        let up = upstream.clone();
        let app = cloud.route(realm_path, axum::routing::get(token)).fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let up = up.clone();
                async move {
                    forward(
                        up.get().expect("the registry is started").clone(),
                        method,
                        uri,
                        headers,
                        body,
                    )
                    .await
                }
            },
        );
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Front {
            url: format!("http://{host}"),
            host,
            settings,
            key,
            cert_der_b64,
            upstream,
            refused,
            _dir: dir,
            _task: task,
        }
    }

    /// The registry's auth settings: tokens from this front.
    pub fn auth(&self) -> Auth {
        Auth::Token(self.settings.clone())
    }

    /// Where the front forwards to, once the registry runs.
    pub fn forward_to(&self, registry_url: &str) {
        self.upstream.set(registry_url.to_string()).unwrap();
    }

    /// A push+pull token for the tests' own pushes, straight to the registry.
    pub fn push_token(&self, repository: &str) -> String {
        sign(
            &self.key,
            &self.cert_der_b64,
            &self.settings.issuer,
            "pusher",
            &self.settings.service,
            vec![
                serde_json::json!({"type": "repository", "name": repository, "actions": ["pull", "push"]}),
            ],
        )
    }
}

async fn forward(
    upstream: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = client
        .request(method, format!("{upstream}{path}"))
        .body(body);
    for (name, value) in &headers {
        if name != "host" {
            request = request.header(name, value);
        }
    }
    let Ok(answer) = request.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" && name != "connection" {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response.body(Body::from(bytes)).unwrap()
}

/// Where test files go: a temporary directory kept by the caller.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub mod aws;
pub mod azure;
pub mod google;
