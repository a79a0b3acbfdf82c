//! `/metrics`, `/healthz` and `/readyz` over plain HTTP/1.1.
//!
//! Three fixed GET endpoints for a scraper and a probe do not need a web framework: each
//! connection sends one request head (at most 8 KiB, within 5 seconds) and gets one response,
//! then the connection is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::metrics::DaemonMetrics;
use crate::registry;

/// What the endpoints report, updated by the scheduler.
#[derive(Debug, Default)]
pub struct Health {
    /// Set after the first cycle has finished.
    pub ready: AtomicBool,
    /// Unix seconds of the scheduler's last heartbeat.
    pub heartbeat: AtomicU64,
    /// Images in the running config.
    pub images: AtomicUsize,
}

/// The scheduler is considered stuck when it has not beaten for this long.
const STALE: u64 = 120;

impl Health {
    pub fn beat(&self) {
        self.heartbeat.store(unix_now(), Ordering::Relaxed);
    }

    fn alive(&self) -> bool {
        unix_now().saturating_sub(self.heartbeat.load(Ordering::Relaxed)) < STALE
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
}

/// Binds `addr` now (so a taken port is a startup error) and serves until `shutdown` is set.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

impl Server {
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let server = self.clone();
                    tokio::spawn(async move { server.answer(stream).await });
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn answer(&self, mut stream: TcpStream) {
        let mut buf = Vec::with_capacity(1024);
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        if read.is_err() {
            return;
        }
        let head = String::from_utf8_lossy(&buf);
        let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let path = target.split('?').next().unwrap_or_default();
        let (status, content_type, body) = match (method, path) {
            ("GET" | "HEAD", "/metrics") => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(
                    &self.registry_metrics.snapshot(),
                    self.health.images.load(Ordering::Relaxed),
                ),
            ),
            ("GET" | "HEAD", "/healthz") if self.health.alive() => {
                ("200 OK", "text/plain", "ok\n".into())
            }
            ("GET" | "HEAD", "/healthz") => (
                "503 Service Unavailable",
                "text/plain",
                "scheduler stalled\n".into(),
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
            _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        };
        let body = if method == "HEAD" {
            String::new()
        } else {
            body
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}
