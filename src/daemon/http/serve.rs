//! Connections for the daemon's listeners: hyper's HTTP/1.1 (keep-alive included) under
//! limits that hold whatever a peer sends.
//!
//! A listener serves a bounded number of connections at once (more are closed unanswered), a
//! request head must arrive within [`HEAD_TIMEOUT`] and fit in [`MAX_HEAD`] bytes, an idle
//! kept-alive connection is closed after the same timeout, and no connection lives longer
//! than [`LIFETIME`]. With TLS, the handshake has the same deadline. What each route allows
//! (bodies, methods, how long a handler may take) is the router's business.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use super::tls::Certificates;

/// A request head must be complete within this, and an idle connection sends its next one
/// within it too.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read (hyper's smallest buffer).
pub const MAX_HEAD: usize = 8 * 1024;
/// A connection is closed after this, once its request in flight (if any) is answered.
pub const LIFETIME: Duration = Duration::from_secs(600);
/// How long a request in flight may still take once its connection is asked to close.
const GRACE: Duration = Duration::from_secs(10);

/// One listener: its socket, how many connections it serves at once, optional TLS.
pub struct Listener {
    pub socket: TcpListener,
    pub connections: usize,
    pub tls: Option<Arc<Certificates>>,
}

/// Serves `router` on `listener` until `shutdown`. A failing `accept` (no file descriptors
/// left) pauses a little instead of spinning.
pub async fn serve(listener: Listener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(listener.connections));
    let tls = listener.tls.map(|certificates| {
        tokio_rustls::TlsAcceptor::from(Arc::new(certificates.server_config()))
    });
    loop {
        tokio::select! {
            accepted = listener.socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let (router, tls, shutdown) = (router.clone(), tls.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        match tls {
                            None => connection(stream, peer, router, shutdown).await,
                            Some(tls) => {
                                match tokio::time::timeout(HEAD_TIMEOUT, tls.accept(stream)).await {
                                    Ok(Ok(stream)) => connection(stream, peer, router, shutdown).await,
                                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                                }
                            }
                        }
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

/// Serves HTTP/1.1 requests on one connection until the peer closes it, it idles past
/// [`HEAD_TIMEOUT`], it has lived [`LIFETIME`], or the daemon stops.
async fn connection<I>(io: I, peer: SocketAddr, router: Router, mut shutdown: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD);
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = shutdown.changed() => {}
        _ = tokio::time::sleep(LIFETIME) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(GRACE, conn).await;
}
