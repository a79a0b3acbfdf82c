//! Real components for integration tests, started on 127.0.0.1 and stopped by PID.
//!
//! - [`Registry`]: the CNCF distribution registry (Debian's `docker-registry`), anonymous,
//!   with htpasswd basic auth, or with token auth against [`TokenIssuer`].
//! - [`TokenIssuer`]: a token service written for the tests: it signs JWTs the registry
//!   verifies against a certificate made with `openssl`.
//! - [`push_image`] and [`push_index`]: images pushed through the registry API, no Docker.
//! - [`FaultServer`]: a raw TCP server that answers from a script (429s, 5xx, slow and
//!   truncated responses), for the faults a real registry will not produce on demand.
//!
//! Each test file uses a part of this module.
#![allow(dead_code)]

pub mod aws;
pub mod browser;
pub mod charts;
pub mod cloud;
pub mod cosign;
pub mod counting;
pub mod etcd;
pub mod forge;
pub mod git;
pub mod helm;
pub mod hostile;
pub mod kustomize;
pub mod need;
pub mod netns;
pub mod openapi;
pub mod proxy;
pub mod referrers;
pub mod shared;
pub mod sigstore;
pub mod webhook;
pub mod world;

use std::collections::VecDeque;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// Fails the test, naming the package, when the registry is not installed: a test that cannot
/// run must not pass (`.ci/run` installs it).
pub fn require_registry() {
    need::missing("", &[need::Component::Registry]);
}

pub enum Auth {
    None,
    Htpasswd { user: String, password: String },
    Token(TokenSettings),
}

#[derive(Clone)]
pub struct TokenSettings {
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub cert: PathBuf,
}

/// A running `docker-registry serve`, killed by PID when dropped.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    tls: Option<Tls>,
}

/// A certificate authority and a server certificate for 127.0.0.1 it signed, made by openssl.
#[derive(Clone)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Runs `openssl ARGS` in `dir`; fails the test with openssl's own words when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Tls {
    pub fn generate(dir: &Path) -> Tls {
        let run = |args: &[&str]| openssl(dir, args);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=image-updater test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat());
        run(&[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        ]
        .concat());
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ]);
        Tls {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }

    /// A client certificate signed by the same CA, for servers that check clients'
    /// certificates (etcd's `--client-cert-auth`): its certificate and key, in `dir`.
    pub fn client(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let run = |args: &[&str]| openssl(dir, args);
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        std::fs::write(
            dir.join(&ext),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            self.ca.to_str().unwrap(),
            "-CAkey",
            self.ca.with_extension("key").to_str().unwrap(),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &ext,
        ]);
        (dir.join(pem), dir.join(key))
    }
}

impl Registry {
    pub async fn start(auth: Auth) -> Registry {
        Registry::start_with(auth, None, None).await
    }

    /// An anonymous registry that reports every push and pull to `url` itself, as its
    /// `notifications` section configures (the events distribution sends, with
    /// `Authorization: Bearer {secret}`), retrying each second while `url` does not answer.
    pub async fn start_notifying(url: &str, secret: &str) -> Registry {
        let section = format!(
            "notifications:\n  endpoints:\n    - name: updater\n      url: {url}\n      headers:\n        Authorization: [\"Bearer {secret}\"]\n      timeout: 2s\n      threshold: 1\n      backoff: 1s\n"
        );
        Registry::start_with(Auth::None, None, Some(section)).await
    }

    /// Serves https with `tls`'s server certificate.
    pub async fn start_tls(auth: Auth, tls: Tls) -> Registry {
        Registry::start_with(auth, Some(tls), None).await
    }

    async fn start_with(auth: Auth, tls: Option<Tls>, notifications: Option<String>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth_section = match &auth {
            Auth::None => String::new(),
            Auth::Htpasswd { user, password } => {
                let hash = bcrypt::hash(password, 5).unwrap();
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{user}:{hash}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                    path.display()
                )
            }
            Auth::Token(t) => format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                t.realm,
                t.service,
                t.issuer,
                t.cert.display()
            ),
        };
        let tls_section = match &tls {
            Some(t) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.cert.display(),
                t.key.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_section}{auth_section}{}",
            dir.path().join("data").display(),
            notifications.unwrap_or_default()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let registry = Registry {
            child,
            port,
            dir,
            tls,
        };
        registry.wait_ready().await;
        registry
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A client for the tests' own pushes, trusting the registry's CA.
    pub fn push_client(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder();
        if let Some(t) = &self.tls {
            b = b.add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&t.ca).unwrap()).unwrap(),
            );
        }
        b.build().unwrap()
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = self.push_client();
        while Instant::now() < deadline {
            if client
                .get(format!("{}/v2/", self.url()))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        panic!("docker-registry did not start on {}: {log}", self.url());
    }
}

impl Registry {
    /// Stops the registry (its own PID), as an outage would.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Child::kill signals this child's PID, never a process found by name.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An EC key and a self-signed certificate for it, made by openssl, that a registry's
/// `auth.token.rootcertbundle` trusts: the key, the certificate's path, and its DER in base64
/// (for the tokens' `x5c`).
pub fn issuer_keys(dir: &Path) -> (jsonwebtoken::EncodingKey, PathBuf, String) {
    let key_path = dir.join("key.pem");
    let cert_path = dir.join("cert.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=image-updater-test-issuer", "-keyout"])
        .arg(&key_path)
        .arg("-out")
        .arg(&cert_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl could not make a key pair");
    let key_pem = std::fs::read(&key_path).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&key_pem).expect("EC key");
    let cert_pem = std::fs::read_to_string(&cert_path).unwrap();
    let cert_der_b64: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    (key, cert_path, cert_der_b64)
}

/// A token service for the registry's `auth.token` mode.
pub struct TokenIssuer {
    pub port: u16,
    pub settings: TokenSettings,
    key: Arc<jsonwebtoken::EncodingKey>,
    cert_der_b64: String,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

impl TokenIssuer {
    /// Grants pull to anonymous callers when `anonymous_pull`, and pull+push to `user`.
    pub async fn start(user: &str, password: &str, anonymous_pull: bool) -> TokenIssuer {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert_path, cert_der_b64) = issuer_keys(dir.path());
        let key = Arc::new(key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let settings = TokenSettings {
            realm: format!("http://127.0.0.1:{port}/token"),
            service: "test-registry".into(),
            issuer: "test-issuer".into(),
            cert: cert_path,
        };
        let requests = Arc::new(AtomicUsize::new(0));
        let expected_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (k, c, s, r) = (
            key.clone(),
            cert_der_b64.clone(),
            settings.clone(),
            requests.clone(),
        );
        let app = axum::Router::new().route(
            "/token",
            axum::routing::get(
                move |headers: axum::http::HeaderMap, axum::extract::Query(q): axum::extract::Query<TokenQuery>| {
                    let (k, c, s, r, expected_auth) = (k.clone(), c.clone(), s.clone(), r.clone(), expected_auth.clone());
                    async move {
                        r.fetch_add(1, Ordering::SeqCst);
                        let given = headers.get("authorization").and_then(|v| v.to_str().ok());
                        let (subject, actions): (&str, Vec<&str>) = match given {
                            Some(a) if a == expected_auth => ("bot", vec!["pull", "push"]),
                            Some(_) => return (axum::http::StatusCode::UNAUTHORIZED, "bad credentials".to_string()),
                            None if anonymous_pull => ("", vec!["pull"]),
                            None => return (axum::http::StatusCode::UNAUTHORIZED, "credentials required".to_string()),
                        };
                        let service = q.service.unwrap_or_else(|| s.service.clone());
                        let access: Vec<serde_json::Value> = q
                            .scope
                            .iter()
                            .filter_map(|scope| {
                                let mut parts = scope.splitn(3, ':');
                                let (kind, name, _) = (parts.next()?, parts.next()?, parts.next()?);
                                Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
                            })
                            .collect();
                        let token = sign(&k, &c, &s.issuer, subject, &service, access);
                        (
                            axum::http::StatusCode::OK,
                            serde_json::json!({"token": token, "expires_in": 300}).to_string(),
                        )
                    }
                },
            ),
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TokenIssuer {
            port,
            settings,
            key,
            cert_der_b64,
            requests,
            task,
            _dir: dir,
        }
    }

    /// A push+pull token for `repository`, for the tests' own pushes.
    pub fn push_token(&self, repository: &str) -> String {
        sign(
            &self.key,
            &self.cert_der_b64,
            &self.settings.issuer,
            "bot",
            &self.settings.service,
            vec![
                serde_json::json!({"type": "repository", "name": repository, "actions": ["pull", "push"]}),
            ],
        )
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn sign(
    key: &jsonwebtoken::EncodingKey,
    cert_der_b64: &str,
    issuer: &str,
    subject: &str,
    audience: &str,
    access: Vec<serde_json::Value>,
) -> String {
    let now = jiff::Timestamp::now().as_second();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.x5c = Some(vec![cert_der_b64.to_string()]);
    let claims = serde_json::json!({
        "iss": issuer, "sub": subject, "aud": audience,
        "exp": now + 300, "nbf": now - 30, "iat": now,
        "jti": format!("{}", fastrand::u64(..)),
        "access": access,
    });
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

/// How the tests' own pushes authenticate.
#[derive(Clone)]
pub enum PushAuth {
    None,
    Basic(String, String),
    Bearer(String),
}

impl PushAuth {
    fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            PushAuth::None => req,
            PushAuth::Basic(u, p) => req.basic_auth(u, Some(p)),
            PushAuth::Bearer(t) => req.bearer_auth(t),
        }
    }
}

/// The HTTP client of the tests' own pushes. It trusts any certificate: what is under test is
/// the image-updater client's verification, not the pusher's.
fn push_http() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn upload_blob(base: &str, auth: &PushAuth, repo: &str, bytes: &[u8]) -> String {
    let client = push_http();
    let digest = sha256(bytes);
    let resp = auth
        .apply(client.post(format!("{base}/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        202,
        "upload start: {}",
        resp.text().await.unwrap()
    );
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let resp = auth
        .apply(client.put(format!("{location}{sep}digest={digest}")))
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        201,
        "upload: {}",
        resp.text().await.unwrap()
    );
    digest
}

pub async fn put_manifest(
    base: &str,
    auth: &PushAuth,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> String {
    let resp = auth
        .apply(push_http().put(format!("{base}/v2/{repo}/manifests/{reference}")))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        201,
        "manifest put: {}",
        resp.text().await.unwrap()
    );
    sha256(body)
}

/// Pushes a one-layer image for `platform` (`linux/amd64`) built at `created`, tagged `tag`
/// when given; returns its manifest digest.
pub async fn push_image(
    base: &str,
    auth: &PushAuth,
    repo: &str,
    tag: Option<&str>,
    created: &str,
    platform: &str,
) -> String {
    push_labelled(
        base,
        auth,
        repo,
        tag,
        created,
        platform,
        serde_json::json!({}),
    )
    .await
}

/// [`push_image`], with `labels` in the image config (as a Dockerfile's `LABEL` puts them).
pub async fn push_labelled(
    base: &str,
    auth: &PushAuth,
    repo: &str,
    tag: Option<&str>,
    created: &str,
    platform: &str,
    labels: serde_json::Value,
) -> String {
    let mut parts = platform.split('/');
    let (os, arch, variant) = (parts.next().unwrap(), parts.next().unwrap(), parts.next());
    let mut config = serde_json::json!({
        "created": created, "os": os, "architecture": arch,
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": labels},
    });
    if let Some(v) = variant {
        config["variant"] = v.into();
    }
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = upload_blob(base, auth, repo, &config_bytes).await;
    // A layer unique to this image, so that every push has its own digest.
    let layer = format!(
        "layer of {repo} {tag:?} {created} {platform} {}",
        fastrand::u64(..)
    )
    .into_bytes();
    let layer_digest = upload_blob(base, auth, repo, &layer).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let digest = sha256(&body);
    put_manifest(
        base,
        auth,
        repo,
        tag.unwrap_or(&digest),
        "application/vnd.oci.image.manifest.v1+json",
        &body,
    )
    .await
}

/// Pushes one image per platform and an OCI index over them, tagged `tag`.
pub async fn push_index(
    base: &str,
    auth: &PushAuth,
    repo: &str,
    tag: &str,
    created: &str,
    platforms: &[&str],
) -> String {
    let mut manifests = Vec::new();
    for platform in platforms {
        let digest = push_image(base, auth, repo, None, created, platform).await;
        let mut parts = platform.split('/');
        let mut p =
            serde_json::json!({"os": parts.next().unwrap(), "architecture": parts.next().unwrap()});
        if let Some(v) = parts.next() {
            p["variant"] = v.into();
        }
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 0, "platform": p,
        }));
    }
    // Sizes must be right for strict registries: fetch each manifest's length.
    for m in manifests.iter_mut() {
        let digest = m["digest"].as_str().unwrap().to_string();
        let resp = auth
            .apply(push_http().get(format!("{base}/v2/{repo}/manifests/{digest}")))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        m["size"] = resp.bytes().await.unwrap().len().into();
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let body = serde_json::to_vec(&index).unwrap();
    put_manifest(
        base,
        auth,
        repo,
        tag,
        "application/vnd.oci.image.index.v1+json",
        &body,
    )
    .await
}

/// One scripted answer of the [`FaultServer`].
#[derive(Clone, Debug)]
pub enum Fault {
    /// A complete response.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Headers promising `body` in full, then only half of it, then the connection closes.
    Truncated { body: String },
    /// Waits before answering like `Respond`.
    Slow {
        delay: Duration,
        status: u16,
        body: String,
    },
    /// Closes the connection without a word.
    Hangup,
}

impl Fault {
    pub fn ok(body: &str) -> Fault {
        Fault::Respond {
            status: 200,
            headers: vec![],
            body: body.into(),
        }
    }

    pub fn status(status: u16) -> Fault {
        Fault::Respond {
            status,
            headers: vec![],
            body: String::new(),
        }
    }

    pub fn too_many(retry_after: &str) -> Fault {
        Fault::Respond {
            status: 429,
            headers: vec![("Retry-After".into(), retry_after.into())],
            body: "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\"}]}".into(),
        }
    }
}

/// A registry impostor answering each request with the next scripted [`Fault`] (the last one
/// repeats), recording each request's path and arrival time.
pub struct FaultServer {
    pub port: u16,
    pub log: Arc<Mutex<Vec<(String, Instant)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultServer {
    pub async fn start(script: Vec<Fault>) -> FaultServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (log, script) = (task_log.clone(), script.clone());
                tokio::spawn(async move {
                    let Some((_, path, _, _)) = proxy::read(&mut socket).await else {
                        return;
                    };
                    log.lock().unwrap().push((path, Instant::now()));
                    let fault = {
                        let mut s = script.lock().unwrap();
                        if s.len() > 1 {
                            s.pop_front().unwrap()
                        } else {
                            s.front().cloned().unwrap_or(Fault::Hangup)
                        }
                    };
                    let json = [("Content-Type".to_string(), "application/json".to_string())];
                    let response = match fault {
                        Fault::Respond {
                            status,
                            headers,
                            body,
                        } => {
                            let headers: Vec<_> = json.iter().cloned().chain(headers).collect();
                            proxy::raw(status, &headers, body.as_bytes(), body.len())
                        }
                        Fault::Truncated { body } => {
                            proxy::raw(200, &json, &body.as_bytes()[..body.len() / 2], body.len())
                        }
                        Fault::Slow {
                            delay,
                            status,
                            body,
                        } => {
                            tokio::time::sleep(delay).await;
                            proxy::raw(status, &json, body.as_bytes(), body.len())
                        }
                        Fault::Hangup => return,
                    };
                    let _ = socket.write_all(&response).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        FaultServer { port, log, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
