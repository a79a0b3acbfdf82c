//! The operator's listener: `/metrics` for a scraper, `/healthz` and `/readyz` for probes and
//! systemd, and `POST /poll` for `image-updater poll`.
//!
//! None of these takes a body: one announced is refused (413) before it is read. Everything
//! but `/poll` answers within [`ANSWER_TIMEOUT`]; `/poll` waits for the image's cycle, at
//! most [`POLL_WAIT`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::serve::{Listener, serve};
use super::{Health, bearer, respond};
use crate::daemon::control::{ControlFile, PollRefused, PollRequest};
use crate::daemon::metrics::{DaemonMetrics, Format};
use crate::registry;

pub struct Server {
    pub health: Arc<Health>,
    pub metrics: Arc<DaemonMetrics>,
    pub registry_metrics: Arc<registry::Metrics>,
    /// The token `POST /poll` requires, and where its requests go; `None` serves no `/poll`.
    pub control: Option<(ControlFile, mpsc::Sender<PollRequest>)>,
    /// The status page and its JSON, answering while `[ui]` enables them.
    pub ui: Option<Arc<super::ui::Ui>>,
}

/// How long `POST /poll` waits for the image's cycle before it gives up answering (the cycle
/// itself goes on).
const POLL_WAIT: Duration = Duration::from_secs(300);
/// Every other endpoint answers within this.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections the metrics and health endpoints serve at once.
pub const MAX_CONNECTIONS: usize = 64;

/// Binds `addr` now, so that a taken port is a startup error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Server {
    pub async fn serve(self: Arc<Self>, socket: TcpListener, shutdown: watch::Receiver<bool>) {
        let listener = Listener {
            socket,
            connections: MAX_CONNECTIONS,
            per_peer: MAX_CONNECTIONS / 2,
            tls: None,
        };
        serve(listener, self.router(), shutdown).await;
    }

    fn router(self: Arc<Self>) -> Router {
        let answered = Router::new()
            .route("/metrics", get(metrics).fallback(not_allowed))
            .route("/healthz", get(healthz).fallback(not_allowed))
            .route("/readyz", get(readyz).fallback(not_allowed))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                ANSWER_TIMEOUT,
            ));
        let ui = self.ui.clone();
        let operator = Router::new()
            .route("/poll", post(poll).fallback(not_allowed))
            .merge(answered)
            // No endpoint here takes a body: a request announcing one is refused unread.
            .layer(RequestBodyLimitLayer::new(0))
            .with_state(self);
        let pages = match ui {
            // The page's forms are small; its own router bounds them.
            Some(ui) => ui.router().layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                ANSWER_TIMEOUT,
            )),
            None => Router::new(),
        };
        operator.merge(pages).fallback(not_found)
    }
}

async fn metrics(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let body = server.metrics.render(
        server.registry_metrics.snapshot(),
        server.health.images.load(Ordering::Relaxed),
        format,
    );
    respond(StatusCode::OK, format.content_type(), body)
}

async fn healthz(State(server): State<Arc<Server>>) -> Response {
    let health = &server.health;
    if health.healthy() {
        return respond(StatusCode::OK, TEXT, "ok\n".into());
    }
    let allowance = health.allowance();
    let reason = match (health.stalled_for(), health.foreign_for(allowance)) {
        _ if !health.alive() => "scheduler stalled\n".into(),
        (Some(s), _) => format!("no image polled successfully for {s}s (allowed {allowance}s)\n"),
        (None, Some((n, age))) => foreign(n, age),
        (None, None) => "scheduler stalled\n".into(),
    };
    respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, reason)
}

async fn readyz(State(server): State<Arc<Server>>) -> Response {
    let health = &server.health;
    if health.ready() {
        return respond(StatusCode::OK, TEXT, "ready\n".into());
    }
    let grace = health.foreign_grace.load(Ordering::Relaxed);
    let reason = match health.foreign_for(grace) {
        Some((n, age)) if health.ready.load(Ordering::Relaxed) => foreign(n, age),
        _ => "first cycle not finished\n".into(),
    };
    respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, reason)
}

/// Why the probes fail while member keys this replica does not divide work with stay.
fn foreign(count: usize, age: u64) -> String {
    format!(
        "{count} cluster member key(s) this replica does not divide work with, for {age}s: another deployment shares the cluster name, or a key was written by hand (see `image-updater cluster status`)\n"
    )
}

async fn not_found(method: Method) -> Response {
    if method == Method::GET || method == Method::HEAD {
        respond(
            StatusCode::NOT_FOUND,
            TEXT,
            "try /metrics, /healthz or /readyz\n".into(),
        )
    } else {
        not_allowed().await
    }
}

async fn not_allowed() -> Response {
    respond(
        StatusCode::METHOD_NOT_ALLOWED,
        TEXT,
        "GET only, except POST /poll and the status page's forms\n".into(),
    )
}

/// `POST /poll?image=ALIAS[&env=ENV]` with the control token: checks the image now and
/// answers with what its cycle did.
async fn poll(State(server): State<Arc<Server>>, headers: HeaderMap, uri: Uri) -> Response {
    let (status, body) = server.poll(&headers, uri.query().unwrap_or_default()).await;
    respond(status, "application/json", body)
}

impl Server {
    async fn poll(&self, headers: &HeaderMap, query: &str) -> (StatusCode, String) {
        let error = |text: String| serde_json::json!({ "error": text }).to_string();
        let Some((control, requests)) = &self.control else {
            return (StatusCode::NOT_FOUND, error("no /poll here".into()));
        };
        if !bearer(headers).is_some_and(|t| control.accepts(t)) {
            return (
                StatusCode::UNAUTHORIZED,
                error("the token from control.json in the daemon's state dir is required".into()),
            );
        }
        let Ok(url) = reqwest::Url::parse(&format!("http://daemon/poll?{query}")) else {
            return (StatusCode::BAD_REQUEST, error("unreadable query".into()));
        };
        let (mut image, mut env) = (None, None);
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "image" => image = Some(value.into_owned()),
                "env" => env = Some(value.into_owned()),
                _ => {}
            }
        }
        let Some(image) = image.filter(|i| !i.is_empty() && i.len() <= 256) else {
            return (
                StatusCode::BAD_REQUEST,
                error("image=ALIAS is required".into()),
            );
        };
        let (reply, answer) = oneshot::channel();
        if requests
            .try_send(PollRequest { image, env, reply })
            .is_err()
        {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                error("too many poll requests waiting; try again".into()),
            );
        }
        match tokio::time::timeout(POLL_WAIT, answer).await {
            Ok(Ok(Ok(answer))) => (
                StatusCode::OK,
                serde_json::to_string(&answer).expect("the answer serializes"),
            ),
            Ok(Ok(Err(
                refused @ (PollRefused::UnknownImage(..) | PollRefused::UnknownEnvironment(..)),
            ))) => (StatusCode::NOT_FOUND, error(refused.to_string())),
            Ok(Ok(Err(refused))) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                error(refused.to_string()),
            ),
            Ok(Err(_)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                error("the daemon is stopping".into()),
            ),
            Err(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                error(format!(
                    "the image's cycle did not finish within {}s; it goes on",
                    POLL_WAIT.as_secs()
                )),
            ),
        }
    }
}
