//! `/metrics`, `/healthz` and `/readyz` over plain HTTP/1.1, and the small HTTP reader and
//! writer the webhook endpoint shares.
//!
//! A few fixed endpoints for a scraper, a probe and registry notifications do not need a web
//! framework: each connection sends one request (head at most 8 KiB, all within 5 seconds)
//! and gets one response, then the connection is closed. A body is read only where one is
//! expected, only after what can be checked first was checked, and only up to its cap; each
//! listener serves a bounded number of connections at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use super::control::{ControlFile, PollRefused, PollRequest};
use super::metrics::DaemonMetrics;
use crate::registry;

/// What the endpoints report, updated by the scheduler.
///
/// Healthy means two things: the scheduler's loop is turning (it beats every few seconds),
/// and polling makes progress: some image was polled successfully within the allowance
/// (`settings.unhealthy_after` times the longest image interval). A loop that turns while every
/// poll hangs or fails is not healthy, so systemd's watchdog and a liveness probe restart it.
#[derive(Debug, Default)]
pub struct Health {
    /// Set after the first cycle has finished.
    pub ready: AtomicBool,
    /// Unix seconds of the scheduler's last heartbeat.
    pub heartbeat: AtomicU64,
    /// Images in the running config.
    pub images: AtomicUsize,
    /// Unix seconds of the last successful poll of any image (the start, before the first).
    pub last_success: AtomicU64,
    /// Seconds without a successful poll after which the daemon is unhealthy.
    pub allowance: AtomicU64,
}

/// The scheduler is considered stuck when it has not beaten for this long.
const STALE: u64 = 120;
/// The allowance is never shorter than this, whatever the intervals.
pub const MIN_ALLOWANCE: Duration = Duration::from_secs(10);

impl Health {
    pub fn new(allowance: Duration) -> Health {
        let h = Health::default();
        h.beat();
        h.succeeded();
        h.set_allowance(allowance);
        h
    }

    pub fn beat(&self) {
        self.heartbeat.store(unix_now(), Ordering::Relaxed);
    }

    /// Some image was just polled successfully.
    pub fn succeeded(&self) {
        self.last_success.store(unix_now(), Ordering::Relaxed);
    }

    pub fn set_allowance(&self, allowance: Duration) {
        self.allowance
            .store(allowance.max(MIN_ALLOWANCE).as_secs(), Ordering::Relaxed);
    }

    fn alive(&self) -> bool {
        unix_now().saturating_sub(self.heartbeat.load(Ordering::Relaxed)) < STALE
    }

    /// Seconds since the last successful poll, when that is past the allowance.
    fn stalled_for(&self) -> Option<u64> {
        let since = unix_now().saturating_sub(self.last_success.load(Ordering::Relaxed));
        (since > self.allowance.load(Ordering::Relaxed)).then_some(since)
    }

    /// Whether `/healthz` says ok (and the systemd watchdog is fed).
    pub fn healthy(&self) -> bool {
        self.alive() && self.stalled_for().is_none()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub struct Server {
    pub health: Arc<Health>,
    pub metrics: Arc<DaemonMetrics>,
    pub registry_metrics: Arc<registry::Metrics>,
    /// The token `POST /poll` requires, and where its requests go; `None` serves no `/poll`.
    pub control: Option<(ControlFile, mpsc::Sender<PollRequest>)>,
}

/// How long `POST /poll` waits for the image's cycle before it gives up answering (the cycle
/// itself goes on).
const POLL_WAIT: Duration = Duration::from_secs(300);

/// Binds `addr` now (so a taken port is a startup error) and serves until `shutdown` is set.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Connections the metrics and health endpoints serve at once.
pub const MAX_CONNECTIONS: usize = 64;

impl Server {
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        accept_loop(listener, MAX_CONNECTIONS, shutdown, |stream, _| {
            let server = self.clone();
            async move { server.answer(stream).await }
        })
        .await;
    }

    async fn answer(&self, mut stream: TcpStream) {
        // These endpoints take no body: one is never read.
        let Some(head) = read_head(&mut stream).await else {
            return;
        };
        if head.length > 0 {
            respond(
                &mut stream,
                "413 Content Too Large",
                "text/plain",
                "no body here\n",
            )
            .await;
            return;
        }
        let request = head.request;
        let (method, path) = (request.method.as_str(), request.path.as_str());
        if (method, path) == ("POST", "/poll") {
            let (status, body) = self.poll(&request).await;
            respond(&mut stream, status, "application/json", &body).await;
            return;
        }
        let (status, content_type, body) = match (method, path) {
            ("GET" | "HEAD", "/metrics") => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(
                    &self.registry_metrics.snapshot(),
                    self.health.images.load(Ordering::Relaxed),
                ),
            ),
            ("GET" | "HEAD", "/healthz") if self.health.healthy() => {
                ("200 OK", "text/plain", "ok\n".into())
            }
            ("GET" | "HEAD", "/healthz") => (
                "503 Service Unavailable",
                "text/plain",
                match self.health.stalled_for() {
                    Some(s) if self.health.alive() => format!(
                        "no image polled successfully for {s}s (allowed {}s)\n",
                        self.health.allowance.load(Ordering::Relaxed)
                    ),
                    _ => "scheduler stalled\n".into(),
                },
            ),
            ("GET" | "HEAD", "/readyz") if self.health.ready.load(Ordering::Relaxed) => {
                ("200 OK", "text/plain", "ready\n".into())
            }
            ("GET" | "HEAD", "/readyz") => (
                "503 Service Unavailable",
                "text/plain",
                "first cycle not finished\n".into(),
            ),
            ("GET" | "HEAD", _) => (
                "404 Not Found",
                "text/plain",
                "try /metrics, /healthz or /readyz\n".into(),
            ),
            _ => (
                "405 Method Not Allowed",
                "text/plain",
                "GET only, except POST /poll\n".into(),
            ),
        };
        let body = if method == "HEAD" {
            String::new()
        } else {
            body
        };
        respond(&mut stream, status, content_type, &body).await;
    }
}

impl Server {
    /// `POST /poll?image=ALIAS[&env=ENV]` with the control token: checks the image now and
    /// answers with what its cycle did.
    async fn poll(&self, request: &Request) -> (&'static str, String) {
        let error = |text: String| serde_json::json!({ "error": text }).to_string();
        let Some((control, requests)) = &self.control else {
            return ("404 Not Found", error("no /poll here".into()));
        };
        if !request.bearer().is_some_and(|t| control.accepts(t)) {
            return (
                "401 Unauthorized",
                error("the token from control.json in the daemon's state dir is required".into()),
            );
        }
        let url = format!("http://daemon/poll?{}", request.query);
        let Ok(url) = reqwest::Url::parse(&url) else {
            return ("400 Bad Request", error("unreadable query".into()));
        };
        let mut image = None;
        let mut env = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "image" => image = Some(value.into_owned()),
                "env" => env = Some(value.into_owned()),
                _ => {}
            }
        }
        let Some(image) = image.filter(|i| !i.is_empty() && i.len() <= 256) else {
            return ("400 Bad Request", error("image=ALIAS is required".into()));
        };
        let (reply, answer) = oneshot::channel();
        if requests
            .try_send(PollRequest { image, env, reply })
            .is_err()
        {
            return (
                "503 Service Unavailable",
                error("too many poll requests waiting; try again".into()),
            );
        }
        match tokio::time::timeout(POLL_WAIT, answer).await {
            Ok(Ok(Ok(answer))) => (
                "200 OK",
                serde_json::to_string(&answer).expect("the answer serializes"),
            ),
            Ok(Ok(Err(
                refused @ (PollRefused::UnknownImage(..) | PollRefused::UnknownEnvironment(..)),
            ))) => ("404 Not Found", error(refused.to_string())),
            Ok(Ok(Err(refused))) => ("500 Internal Server Error", error(refused.to_string())),
            Ok(Err(_)) => (
                "503 Service Unavailable",
                error("the daemon is stopping".into()),
            ),
            Err(_) => (
                "504 Gateway Timeout",
                error(format!(
                    "the image's cycle did not finish within {}s; it goes on",
                    POLL_WAIT.as_secs()
                )),
            ),
        }
    }
}

/// One HTTP request as read off a connection.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The token of `Authorization: Bearer TOKEN`; the scheme is case-insensitive (RFC 9110:
    /// `Bearer`, `bearer`, `BEARER`).
    pub fn bearer(&self) -> Option<&str> {
        let (scheme, token) = self.header("authorization")?.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

/// Whether a presented secret is the expected one, compared without stopping at the first
/// difference, so the time taken tells a client nothing about how much of it was right.
pub fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

const MAX_HEAD: usize = 8 * 1024;
/// The whole exchange, head and body, must be over within this.
const READ_DEADLINE: Duration = Duration::from_secs(5);

/// A request's head, read off a connection, and the body bytes that came with it.
pub struct Head {
    pub request: Request,
    /// Body bytes already read with the head.
    early: Vec<u8>,
    /// `Content-Length`, 0 when absent.
    pub length: usize,
    started: tokio::time::Instant,
}

/// Reads one request's head; `None` when the peer sent something too slow, too big or not
/// HTTP. The body is not read: whether it is worth reading is the caller's decision.
pub async fn read_head(stream: &mut TcpStream) -> Option<Head> {
    let started = tokio::time::Instant::now();
    tokio::time::timeout(READ_DEADLINE, async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return None;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split_whitespace();
        let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target, String::new()),
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length = match headers.iter().find(|(n, _)| n == "content-length") {
            Some((_, v)) => v.parse().ok()?,
            None => 0,
        };
        Some(Head {
            request: Request {
                method,
                path,
                query,
                headers,
                body: Vec::new(),
            },
            early: buf[head_end..].to_vec(),
            length,
            started,
        })
    })
    .await
    .ok()
    .flatten()
}

/// Reads the body of `head`, at most `limit` bytes, within what is left of the deadline;
/// `None` when it is larger, slower or cut short.
pub async fn read_body(stream: &mut TcpStream, head: Head, limit: usize) -> Option<Request> {
    if head.length > limit {
        return None;
    }
    let deadline = head.started + READ_DEADLINE;
    let Head {
        mut request,
        early,
        length,
        ..
    } = head;
    tokio::time::timeout_at(deadline, async {
        let mut body = early;
        let mut chunk = [0u8; 4096];
        while body.len() < length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        body.truncate(length);
        request.body = body;
        Some(request)
    })
    .await
    .ok()
    .flatten()
}

/// Accepts connections on `listener` until `shutdown`, at most `limit` at a time (more are
/// closed at once, unanswered), and runs `serve` on each. A failing `accept` (no file
/// descriptors left) waits a little instead of spinning.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limit: usize,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limit));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        drop(stream);
                        continue;
                    };
                    let task = serve(stream, peer);
                    tokio::spawn(async move {
                        task.await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Writes one response and closes the connection.
pub async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
