//! Registry push events: `POST /webhook` makes the images a push names due at once, so a new
//! tag is committed seconds after it is pushed. Polling stays the safety net: a lost or forged
//! event costs nothing but an early check.
//!
//! Accepted payloads: CNCF distribution notifications, Docker Hub, GitHub Packages
//! (`package`/`registry_package` events for ghcr.io), Harbor, and a generic
//! `{"repository": "...", "tag": "..."}`. Accepted proofs of the shared secret: an HMAC-SHA256
//! of the body (`X-Hub-Signature-256: sha256=...`, as GitHub sends, or
//! `X-Image-Updater-Signature`), `Authorization: Bearer SECRET` (distribution and Harbor can
//! send fixed headers), or `?token=SECRET` for senders that can only be given a URL (Docker Hub).

// Numbers here come from registries, webhook senders and clocks: no arithmetic that can
// overflow or panic; every operation is checked or saturating.
#![deny(clippy::arithmetic_side_effects)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::http::serve::{Listener, serve as serve_connections};
use super::http::tls::Certificates;
use super::http::{bearer, respond, same_secret};
use crate::config::Config;
use crate::secrets;

/// A push a registry told us about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The registry host, when the payload says.
    pub host: Option<String>,
    /// The repository path inside the registry: `org/api`.
    pub repository: String,
    pub tag: Option<String>,
    /// The manifest digest the tag was pushed as, when the payload says (and it is a
    /// well-formed digest): a hint of whether the content is new, never taken as what the
    /// tag names.
    pub digest: Option<String>,
}

/// Reads the webhook secret once, at startup.
pub async fn secret(config: &Config) -> Result<Option<String>, String> {
    let Some(w) = &config.webhooks else {
        return Ok(None);
    };
    match secrets::resolve(&w.secret, "webhooks").await {
        Ok(Some(secret)) => Ok(Some(secret.into_text())),
        Ok(None) => Err(format!("webhooks: the secret {} is empty", w.secret)),
        Err(e) => Err(format!("webhooks: {e}")),
    }
}

/// Connections the webhook listener serves at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Deliveries handled at once once their body is read; more wait for a turn. A body being
/// read holds a connection, not one of these: a peer dripping bodies is bounded by its
/// connections and by the body's deadlines, and cannot keep a signed delivery from its turn.
const MAX_IN_FLIGHT: usize = 64;
/// The largest event body read; registries' push notifications are a few KiB.
pub const MAX_BODY: usize = 64 * 1024;
/// What every answer of this endpoint is.
const JSON: &str = "application/json";
/// A body must have arrived within this once its head has.
const BODY_DEADLINE: Duration = Duration::from_secs(5);
/// Its first bytes within this.
const FIRST_BYTES: Duration = Duration::from_secs(1);

/// What the webhook handler shares across deliveries.
struct Hook {
    secret: Arc<String>,
    events: mpsc::Sender<Vec<Pushed>>,
    guard: Guard,
    turns: tokio::sync::Semaphore,
}

/// Serves `POST /webhook` until `shutdown`, over TLS when `tls` is given; each accepted event
/// is sent to the scheduler.
pub async fn serve(
    socket: TcpListener,
    tls: Option<Arc<Certificates>>,
    secret: Arc<String>,
    events: mpsc::Sender<Vec<Pushed>>,
    shutdown: watch::Receiver<bool>,
) {
    let hook = Arc::new(Hook {
        secret,
        events,
        guard: Guard::default(),
        turns: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
    });
    let router = Router::new()
        .route("/webhook", post(receive).fallback(elsewhere))
        .fallback(elsewhere)
        .with_state(hook);
    let listener = Listener {
        socket,
        connections: MAX_CONNECTIONS,
        per_peer: MAX_CONNECTIONS / 4,
        tls,
    };
    serve_connections(listener, router, shutdown).await;
}

/// A request's parts that prove the secret.
pub struct Delivery<'a> {
    pub headers: &'a HeaderMap,
    pub query: &'a str,
    pub body: &'a [u8],
}

impl Delivery<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// Anything but `POST /webhook`.
async fn elsewhere(
    State(hook): State<Arc<Hook>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    hook.guard.refused(peer, StatusCode::NOT_FOUND);
    respond(
        StatusCode::NOT_FOUND,
        JSON,
        r#"{"error":"POST /webhook"}"#.into(),
    )
}

async fn receive(
    State(hook): State<Arc<Hook>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let query = parts.uri.query().unwrap_or_default();
    let (status, text) = match admit(&parts.headers, query, &hook.secret) {
        Err(refusal) => refusal,
        Ok(()) => match read_body(&parts.headers, body).await {
            None => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(r#"{{"error":"at most {MAX_BODY} bytes, sent within 5 s"}}"#),
            ),
            Some(bytes) => {
                let delivery = Delivery {
                    headers: &parts.headers,
                    query,
                    body: &bytes,
                };
                match hook.turns.acquire().await {
                    Ok(_turn) => hook.handle(&delivery).await,
                    Err(_) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        r#"{"error":"shutting down"}"#.into(),
                    ),
                }
            }
        },
    };
    if !status.is_success() {
        hook.guard.refused(peer, status);
    }
    respond(status, JSON, text)
}

/// The body, when it is at most [`MAX_BODY`] bytes and arrives within [`BODY_DEADLINE`]; one
/// announced larger is refused unread.
async fn read_body(headers: &HeaderMap, body: axum::body::Body) -> Option<axum::body::Bytes> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return None;
    }
    let started = tokio::time::Instant::now();
    let mut chunks = body.into_data_stream();
    let mut bytes = Vec::new();
    // The first bytes come soon after the head, or never: a peer holding a slot with a body
    // it drips is cut at FIRST_BYTES, not at the whole body's deadline.
    let mut deadline = started.checked_add(FIRST_BYTES)?;
    loop {
        let next = tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut chunks));
        match next.await.ok()? {
            None => return Some(bytes.into()),
            Some(chunk) => {
                let chunk = chunk.ok()?;
                if bytes.len().checked_add(chunk.len())? > MAX_BODY {
                    return None;
                }
                bytes.extend_from_slice(&chunk);
                deadline = started.checked_add(BODY_DEADLINE)?;
            }
        }
    }
}

/// What can be checked before the body is read: a token. A request with no proof of the
/// secret at all is refused without reading its body; one signed over its body (HMAC) is
/// read, up to [`MAX_BODY`], and checked then.
fn admit(headers: &HeaderMap, query: &str, secret: &str) -> Result<(), (StatusCode, String)> {
    let signed = ["x-hub-signature-256", "x-image-updater-signature"]
        .iter()
        .any(|h| headers.contains_key(*h));
    let unread = Delivery {
        headers,
        query,
        body: &[],
    };
    if signed || authorized(&unread, secret) {
        return Ok(());
    }
    Err((
        StatusCode::UNAUTHORIZED,
        r#"{"error":"missing or wrong signature or token"}"#.into(),
    ))
}

impl Hook {
    async fn handle(&self, delivery: &Delivery<'_>) -> (StatusCode, String) {
        if !authorized(delivery, &self.secret) {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"error":"missing or wrong signature or token"}"#.into(),
            );
        }
        // Decoded once: the pushes and the replay check read the same value.
        let decoded = serde_json::from_slice::<Value>(delivery.body)
            .map_err(|e| format!("not JSON: {e}"))
            .and_then(|v| pushes(&v).map(|p| (v, p)));
        let (body, pushed) = match decoded {
            Ok(d) => d,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": e }).to_string(),
                );
            }
        };
        // A delivery seen before, or one stamped outside the window, is not acted on again.
        match self.guard.fresh(delivery, &body) {
            Freshness::Fresh => {}
            Freshness::Replayed => {
                return (StatusCode::OK, r#"{"events":0,"duplicate":true}"#.into());
            }
            Freshness::Stale => {
                return (
                    StatusCode::CONFLICT,
                    r#"{"error":"the event is stamped outside the accepted window"}"#.into(),
                );
            }
        }
        tracing::info!(events = pushed.len(), repositories = ?pushed.iter().map(|p| p.repository.as_str()).collect::<Vec<_>>(), "webhook: push events");
        let count = pushed.len();
        if !pushed.is_empty() && self.events.send(pushed).await.is_err() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"shutting down"}"#.into(),
            );
        }
        (
            StatusCode::ACCEPTED,
            serde_json::json!({ "events": count }).to_string(),
        )
    }
}

/// How far from now an event's own timestamp may be, and how long a delivery id is kept.
pub const REPLAY_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);
/// Delivery ids remembered at most.
const REMEMBERED: usize = 10_000;

enum Freshness {
    Fresh,
    Replayed,
    Stale,
}

/// Replay protection and the rate limit on refusal logs, shared by a listener's connections.
#[derive(Default)]
struct Guard {
    /// Delivery ids seen, oldest first, with when.
    seen: std::sync::Mutex<std::collections::VecDeque<(String, std::time::Instant)>>,
    /// Refusals since the last one logged, and when that was.
    refusals: std::sync::Mutex<(u64, Option<std::time::Instant>)>,
}

impl Guard {
    /// Whether the delivery is new (its body's digest, and its events' ids when it has them,
    /// not seen within [`REPLAY_WINDOW`]), and its timestamps (distribution's `timestamp`,
    /// Harbor's `occur_at`) within that window of now. The same body sent twice within the
    /// hour is acted on once (polling is the safety net for a registry that sends identical
    /// bodies for two pushes).
    fn fresh(&self, delivery: &Delivery<'_>, body: &Value) -> Freshness {
        let now = jiff::Timestamp::now();
        let window = jiff::SignedDuration::try_from(REPLAY_WINDOW).unwrap_or_default();
        let stamps = body
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e.get("timestamp")?
                    .as_str()?
                    .parse::<jiff::Timestamp>()
                    .ok()
            })
            .chain(
                body.get("occur_at")
                    .and_then(Value::as_i64)
                    .and_then(|t| jiff::Timestamp::from_second(t).ok()),
            );
        for stamp in stamps {
            if now.duration_since(stamp).abs() > window {
                return Freshness::Stale;
            }
        }
        // The events' own ids are inside the signed body; a header's id (GitHub's
        // `X-GitHub-Delivery`) is not, so anyone who saw one delivery could resend it with new
        // ids. What identifies a delivery is therefore the digest of the body the signature
        // covers, and the events' ids.
        let digest = {
            use sha2::Digest as _;
            format!(
                "body:{}",
                crate::hex::encode(&sha2::Sha256::digest(delivery.body))
            )
        };
        let ids: Vec<String> = body
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("id")?.as_str().map(|id| format!("id:{id}")))
            .collect();
        let mut seen = self.seen.lock().expect("seen lock");
        while seen
            .front()
            .is_some_and(|(_, at)| at.elapsed() > REPLAY_WINDOW)
            || seen.len() > REMEMBERED
        {
            seen.pop_front();
        }
        let known = |id: &String| seen.iter().any(|(s, _)| s == id);
        if known(&digest) || (!ids.is_empty() && ids.iter().all(known)) {
            return Freshness::Replayed;
        }
        let at = std::time::Instant::now();
        seen.extend(ids.into_iter().chain([digest]).map(|id| (id, at)));
        Freshness::Fresh
    }

    /// Logs a refused request, at most one line every ten seconds (with how many more there
    /// were), so a flood of bad requests cannot flood the log.
    fn refused(&self, peer: SocketAddr, status: StatusCode) {
        let mut r = self.refusals.lock().expect("refusals lock");
        let due =
            r.1.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(10));
        if due {
            tracing::warn!(%peer, %status, more = r.0, "webhook refused (further refusals are summarised every 10 s)");
            *r = (0, Some(std::time::Instant::now()));
        } else {
            r.0 = r.0.saturating_add(1);
        }
    }
}

/// Whether the delivery proves it knows the secret.
pub fn authorized(delivery: &Delivery<'_>, secret: &str) -> bool {
    for header in ["x-hub-signature-256", "x-image-updater-signature"] {
        if let Some(value) = delivery.header(header) {
            let hex = value.strip_prefix("sha256=").unwrap_or(value);
            let Some(expected) = crate::hex::decode(hex) else {
                return false;
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes any key length");
            mac.update(delivery.body);
            return mac.verify_slice(&expected).is_ok();
        }
    }
    if let Some(auth) = delivery.header("authorization") {
        // `Bearer SECRET`, or the secret alone.
        let token = bearer(delivery.headers).unwrap_or(auth);
        return same_secret(token.as_bytes(), secret.as_bytes());
    }
    delivery
        .query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("token="))
        .any(|t| same_secret(t.as_bytes(), secret.as_bytes()))
}

/// The pushes a payload describes, whichever registry sent it.
pub fn parse(body: &[u8]) -> Result<Vec<Pushed>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    pushes(&v)
}

/// What one sender's payload says was pushed; `None` when the payload is not that sender's.
type Sender = fn(&Value) -> Option<Result<Vec<Pushed>, String>>;

/// The senders whose payloads are understood, tried in this order (the generic form last: it
/// is the loosest).
const SENDERS: [Sender; 5] = [distribution, docker_hub, github_packages, harbor, generic];

/// The pushes a decoded payload describes.
fn pushes(v: &Value) -> Result<Vec<Pushed>, String> {
    SENDERS.iter().find_map(|sender| sender(v)).unwrap_or_else(|| {
        Err("unrecognized payload: expected a distribution, Docker Hub, GitHub Packages, Harbor or {\"repository\", \"tag\"} event".into())
    })
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// A digest a payload names, kept only when it is one: anything else is as if unsaid.
fn digest(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|d| d.len() <= 256 && crate::reference::is_valid_digest(d))
        .map(str::to_string)
}

/// Whether a distribution event's target is a manifest (or index), not a layer or config
/// blob: a registry configured without `ignore: mediatypes` reports every blob too, and a
/// blob alone changes no tag. A target that names no media type is kept.
fn is_manifest(target: &Value) -> bool {
    target
        .get("mediaType")
        .and_then(Value::as_str)
        .is_none_or(|m| m.contains("manifest") || m.contains("image.index"))
}

/// CNCF distribution: `{"events": [{"action": "push", "target": {...}, "request": {...}}]}`.
fn distribution(v: &Value) -> Option<Result<Vec<Pushed>, String>> {
    let events = v.get("events").and_then(Value::as_array)?;
    Some(Ok(events
        .iter()
        .filter(|e| e.get("action").and_then(Value::as_str) == Some("push"))
        .filter(|e| e.get("target").is_some_and(is_manifest))
        .filter_map(|e| {
            Some(Pushed {
                host: e.pointer("/request/host").and_then(text),
                repository: e.pointer("/target/repository").and_then(text)?,
                tag: e.pointer("/target/tag").and_then(text),
                digest: digest(e.pointer("/target/digest")),
            })
        })
        .collect()))
}

/// Docker Hub: `{"push_data": {"tag": ...}, "repository": {"repo_name": "org/app"}}`.
fn docker_hub(v: &Value) -> Option<Result<Vec<Pushed>, String>> {
    let tag = v.pointer("/push_data/tag")?;
    let repo = v.pointer("/repository/repo_name")?;
    let Some(repo) = text(repo) else {
        return Some(Err("repository.repo_name is not a string".into()));
    };
    let repository = if repo.contains('/') {
        repo
    } else {
        format!("library/{repo}")
    };
    Some(Ok(vec![Pushed {
        host: Some("docker.io".into()),
        repository,
        tag: text(tag),
        digest: None,
    }]))
}

/// GitHub Packages: `{"package" or "registry_package": {"name", "owner": {"login"},
/// "package_version": ...}}`; packages other than containers are no pushes of images.
fn github_packages(v: &Value) -> Option<Result<Vec<Pushed>, String>> {
    let p = v.get("package").or_else(|| v.get("registry_package"))?;
    if p.get("package_type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.eq_ignore_ascii_case("container"))
    {
        return Some(Ok(Vec::new()));
    }
    let owner = p
        .pointer("/owner/login")
        .or_else(|| p.get("namespace"))
        .and_then(text);
    let Some(owner) = owner else {
        return Some(Err("package.owner.login missing".into()));
    };
    let Some(name) = p.get("name").and_then(text) else {
        return Some(Err("package.name missing".into()));
    };
    let tag = p
        .pointer("/package_version/container_metadata/tag/name")
        .and_then(text)
        .filter(|t| !t.is_empty());
    Some(Ok(vec![Pushed {
        host: Some("ghcr.io".into()),
        repository: format!("{owner}/{name}").to_lowercase(),
        tag,
        digest: digest(p.pointer("/package_version/container_metadata/tag/digest")),
    }]))
}

/// Harbor: `{"type": "PUSH_ARTIFACT", "event_data": {"repository": {"repo_full_name"},
/// "resources": [...]}}`; other event types are no pushes.
fn harbor(v: &Value) -> Option<Result<Vec<Pushed>, String>> {
    let data = v.get("event_data")?;
    if v.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != "PUSH_ARTIFACT" && t != "pushImage")
    {
        return Some(Ok(Vec::new()));
    }
    let Some(repository) = data.pointer("/repository/repo_full_name").and_then(text) else {
        return Some(Err("event_data.repository.repo_full_name missing".into()));
    };
    let resources = data
        .get("resources")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let host = resources
        .first()
        .and_then(|r| r.get("resource_url"))
        .and_then(Value::as_str)
        .and_then(|u| u.split('/').next())
        .map(str::to_string);
    let mut out: Vec<Pushed> = resources
        .iter()
        .map(|r| Pushed {
            host: host.clone(),
            repository: repository.clone(),
            tag: r.get("tag").and_then(text),
            digest: digest(r.get("digest")),
        })
        .collect();
    if out.is_empty() {
        out.push(Pushed {
            host,
            repository,
            tag: None,
            digest: None,
        });
    }
    Some(Ok(out))
}

/// Generic: `{"repository": "ghcr.io/org/api" or "org/api", "tag": "v1.5.0"}`, and
/// optionally `"digest": "sha256:..."`.
fn generic(v: &Value) -> Option<Result<Vec<Pushed>, String>> {
    let repo = v.get("repository").and_then(Value::as_str)?;
    let (host, path) = match repo.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(first.to_string()), rest.to_string())
        }
        _ => (None, repo.to_string()),
    };
    Some(Ok(vec![Pushed {
        host,
        repository: path,
        tag: v.get("tag").and_then(text),
        digest: digest(v.get("digest")),
    }]))
}

/// The images a push concerns (same repository path, and same registry when the event names
/// one), each with the tags the events say were pushed to it.
pub fn matching(config: &Config, pushed: &[Pushed]) -> Vec<(String, Vec<crate::poll::PushedTag>)> {
    config
        .images
        .values()
        .filter_map(|image| {
            let concerned: Vec<&Pushed> = pushed
                .iter()
                .filter(|p| {
                    p.repository == image.reference.path
                        && p.host.as_deref().is_none_or(|h| {
                            crate::reference::canonical_registry(h) == image.reference.registry()
                                || image
                                    .registry
                                    .as_ref()
                                    .and_then(|r| config.registries.get(r))
                                    .is_some_and(|r| r.api_url.contains(h))
                        })
                })
                .collect();
            (!concerned.is_empty()).then(|| {
                let tags = concerned
                    .iter()
                    .filter_map(|p| {
                        Some(crate::poll::PushedTag {
                            tag: p.tag.clone()?,
                            digest: p.digest.clone(),
                        })
                    })
                    .collect();
                (image.alias.clone(), tags)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a delivery with these headers, query and body proves the secret.
    fn proves(headers: &[(&str, &str)], query: &str, body: &str, secret: &str) -> bool {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                axum::http::HeaderValue::from_str(value).unwrap(),
            );
        }
        let delivery = Delivery {
            headers: &map,
            query,
            body: body.as_bytes(),
        };
        authorized(&delivery, secret)
    }

    /// A body whose first bytes do not come within FIRST_BYTES is given up then, not at the
    /// whole body's deadline; one that starts in time may take longer.
    #[tokio::test]
    async fn a_body_that_never_starts_is_cut_at_its_first_bytes_deadline() {
        let silent = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
        let started = std::time::Instant::now();
        let got = read_body(&HeaderMap::new(), axum::body::Body::from_stream(silent)).await;
        assert!(got.is_none());
        let took = started.elapsed();
        assert!(took >= FIRST_BYTES && took < BODY_DEADLINE, "{took:?}");
        let slow = futures_util::stream::unfold(0u8, |n| async move {
            (n < 3).then_some(())?;
            tokio::time::sleep(Duration::from_millis(700)).await;
            Some((Ok::<_, std::io::Error>(vec![b'x']), n + 1))
        });
        let got = read_body(&HeaderMap::new(), axum::body::Body::from_stream(slow)).await;
        assert_eq!(got.as_deref(), Some(&b"xxx"[..]));
    }

    /// The same signed body resent with new `X-GitHub-Delivery` ids (which the signature does
    /// not cover) is a replay; another body is not, nor the same events' ids in a new body
    /// only when some id is new.
    #[test]
    fn a_replay_is_known_by_its_body_whatever_the_headers_say() {
        let guard = Guard::default();
        let body = r#"{"events":[{"action":"push","target":{"repository":"org/api","tag":"v1"}}]}"#;
        let value: Value = serde_json::from_str(body).unwrap();
        let fresh = |delivery_id: &str, body: &str, value: &Value| {
            let mut map = HeaderMap::new();
            map.insert(
                "x-github-delivery",
                axum::http::HeaderValue::from_str(delivery_id).unwrap(),
            );
            let delivery = Delivery {
                headers: &map,
                query: "",
                body: body.as_bytes(),
            };
            matches!(guard.fresh(&delivery, value), Freshness::Fresh)
        };
        assert!(fresh("d-0", body, &value));
        for n in 1..20 {
            assert!(!fresh(&format!("d-{n}"), body, &value), "resend {n}");
        }
        let other = body.replace("v1", "v2");
        let other_value: Value = serde_json::from_str(&other).unwrap();
        assert!(fresh("d-0", &other, &other_value));
        // Event ids inside the body: all seen, a replay even in a body spelled differently.
        let with_id = r#"{"events":[{"id":"e1","action":"push","target":{"repository":"org/api","tag":"v3"}}]}"#;
        let spaced = with_id.replace(",", ", ");
        let v1: Value = serde_json::from_str(with_id).unwrap();
        assert!(fresh("x", with_id, &v1));
        assert!(!fresh("y", &spaced, &v1));
    }

    #[test]
    fn signatures_tokens_and_forgeries() {
        let body = r#"{"repository":"org/api","tag":"v1"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body.as_bytes());
        let sig: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(proves(
            &[("x-hub-signature-256", &format!("sha256={sig}"))],
            "",
            body,
            "s3cret"
        ));
        assert!(!proves(
            &[("x-hub-signature-256", &format!("sha256={sig}"))],
            "",
            &body.replace("v1", "v2"),
            "s3cret"
        ));
        assert!(!proves(
            &[("x-hub-signature-256", "sha256=zz")],
            "",
            body,
            "s3cret"
        ));
        assert!(proves(
            &[("authorization", "Bearer s3cret")],
            "",
            body,
            "s3cret"
        ));
        assert!(!proves(
            &[("authorization", "Bearer s3cre")],
            "",
            body,
            "s3cret"
        ));
        assert!(proves(&[], "token=s3cret", body, "s3cret"));
        assert!(!proves(&[], "", body, "s3cret"));
    }

    #[test]
    fn every_registry_payload() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        // A pull, a layer's push, a tagged manifest's push, and one whose digest is no digest.
        let distribution = format!(
            r#"{{"events":[{{"action":"pull","target":{{"repository":"org/api","tag":"v0"}}}},
            {{"action":"push","target":{{"repository":"org/api","mediaType":"application/octet-stream","digest":"{digest}"}}}},
            {{"action":"push","target":{{"repository":"org/api","tag":"v1","digest":"{digest}","mediaType":"application/vnd.oci.image.manifest.v1+json"}},"request":{{"host":"registry.example.com:5000"}}}},
            {{"action":"push","target":{{"repository":"org/api","tag":"v2","digest":"sha256:zz","mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}}}}]}}"#
        );
        assert_eq!(
            parse(distribution.as_bytes()).unwrap(),
            [
                Pushed {
                    host: Some("registry.example.com:5000".into()),
                    repository: "org/api".into(),
                    tag: Some("v1".into()),
                    digest: Some(digest.clone()),
                },
                Pushed {
                    host: None,
                    repository: "org/api".into(),
                    tag: Some("v2".into()),
                    digest: None,
                }
            ]
        );
        let hub = r#"{"push_data":{"tag":"1.27.3","pusher":"x"},"repository":{"repo_name":"nginx","namespace":"library"}}"#;
        assert_eq!(
            parse(hub.as_bytes()).unwrap()[0].repository,
            "library/nginx"
        );
        let ghcr = format!(
            r#"{{"action":"published","package":{{"name":"API","package_type":"CONTAINER","owner":{{"login":"Org"}},"package_version":{{"container_metadata":{{"tag":{{"name":"v2","digest":"{digest}"}}}}}}}}}}"#
        );
        assert_eq!(
            parse(ghcr.as_bytes()).unwrap(),
            [Pushed {
                host: Some("ghcr.io".into()),
                repository: "org/api".into(),
                tag: Some("v2".into()),
                digest: Some(digest.clone()),
            }]
        );
        let harbor = format!(
            r#"{{"type":"PUSH_ARTIFACT","event_data":{{"resources":[{{"tag":"v3","digest":"{digest}","resource_url":"harbor.example.com/lib/api:v3"}}],"repository":{{"repo_full_name":"lib/api"}}}}}}"#
        );
        let harbor = parse(harbor.as_bytes()).unwrap();
        assert_eq!(harbor[0].host.as_deref(), Some("harbor.example.com"));
        assert_eq!(harbor[0].digest.as_deref(), Some(digest.as_str()));
        let generic =
            format!(r#"{{"repository":"127.0.0.1:5000/org/api","tag":"v4","digest":"{digest}"}}"#);
        let generic = parse(generic.as_bytes()).unwrap();
        assert_eq!(generic[0].host.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(generic[0].digest.as_deref(), Some(digest.as_str()));
        assert!(parse(b"{}").unwrap_err().contains("unrecognized payload"));
        assert!(parse(b"nope").unwrap_err().starts_with("not JSON"));
    }
}
