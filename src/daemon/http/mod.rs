//! The daemon's HTTP side: the health the endpoints report, the operator's listener
//! (`/metrics`, `/healthz`, `/readyz`, `POST /poll`, in [`endpoints`]), and the connection
//! handling both it and the webhook listener share ([`serve`], with [`tls`] for webhooks).
//!
//! hyper speaks HTTP/1.1 and axum routes; what is ours is the policy: which requests may carry
//! a body and how large, what is checked before a body is read, and how many connections and
//! requests a peer may hold.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub mod endpoints;
pub mod serve;
pub mod tls;
pub mod ui;

pub use endpoints::Server;

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
    /// In a cluster: Unix seconds since member keys this replica does not divide work with
    /// have been seen (0: none), how many there are, and how long they may stay before
    /// `/readyz` turns red (the lease: long enough for replicas that reload one after another).
    pub foreign_since: AtomicU64,
    pub foreign: AtomicUsize,
    pub foreign_grace: AtomicU64,
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
        (since > self.allowance()).then_some(since)
    }

    /// Whether `/healthz` says ok (and the systemd watchdog is fed).
    pub fn healthy(&self) -> bool {
        self.alive() && self.stalled_for().is_none() && self.foreign_for(self.allowance()).is_none()
    }

    /// Seconds without a successful poll, or with foreign member keys, before `/healthz` fails.
    pub fn allowance(&self) -> u64 {
        self.allowance.load(Ordering::Relaxed)
    }

    /// The member keys seen now that this replica does not divide work with: their number,
    /// when they have been there for longer than `grace` seconds.
    pub fn foreign_for(&self, grace: u64) -> Option<(usize, u64)> {
        let since = self.foreign_since.load(Ordering::Relaxed);
        let count = self.foreign.load(Ordering::Relaxed);
        let age = unix_now().saturating_sub(since);
        (since != 0 && count > 0 && age > grace).then_some((count, age))
    }

    /// The member keys this replica does not divide work with, as the cluster now shows them.
    pub fn saw_foreign(&self, count: usize) {
        self.foreign.store(count, Ordering::Relaxed);
        if count == 0 {
            self.foreign_since.store(0, Ordering::Relaxed);
        } else if self.foreign_since.load(Ordering::Relaxed) == 0 {
            self.foreign_since.store(unix_now(), Ordering::Relaxed);
        }
    }

    /// Whether `/readyz` says ready: the first cycle finished, and no foreign member key has
    /// stayed past its grace.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && self
                .foreign_for(self.foreign_grace.load(Ordering::Relaxed))
                .is_none()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A response of both listeners: a status, a content type and a body.
pub fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// The token of `Authorization: Bearer TOKEN`; the scheme is case-insensitive (RFC 9110:
/// `Bearer`, `bearer`, `BEARER`).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
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
