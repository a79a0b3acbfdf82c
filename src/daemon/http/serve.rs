//! Connections for the daemon's listeners: hyper's HTTP/1.1 (keep-alive included) under
//! limits that hold whatever a peer sends.
//!
//! A listener serves a bounded number of connections at once, and a bounded number from one
//! peer address; a request head must arrive within [`HEAD_TIMEOUT`] and fit in [`MAX_HEAD`]
//! bytes, an idle kept-alive connection is closed after the same timeout, and no connection
//! lives longer than [`LIFETIME`]. With TLS, the handshake has the same deadline. What each
//! route allows (bodies, methods, how long a handler may take) is the router's business.
//!
//! At either cap, the oldest idle connection (no request in flight) is closed to make room:
//! the peer's own when it is the peer that is at its cap. A connection is refused only when
//! every connection counted against the cap is busy. So idle connections held open by anyone
//! cannot keep a health probe or a registry's delivery out: a new connection sends its
//! request at once and is never the oldest idle one.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

/// One listener: its socket, how many connections it serves at once (and from one peer
/// address), optional TLS.
pub struct Listener {
    pub socket: TcpListener,
    pub connections: usize,
    pub per_peer: usize,
    pub tls: Option<Arc<Certificates>>,
}

/// The open connections, oldest first (ids grow).
#[derive(Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Open>,
}

/// One open connection: its peer, its requests in flight, and how to ask it to close.
struct Open {
    peer: IpAddr,
    busy: Arc<AtomicUsize>,
    close: Arc<tokio::sync::Notify>,
}

/// What a connection task holds: its id, its count of requests in flight, its close signal.
struct Admitted {
    id: u64,
    busy: Arc<AtomicUsize>,
    close: Arc<tokio::sync::Notify>,
}

impl Table {
    /// Room for a connection from `peer`, closing the oldest idle connection at either cap;
    /// `None` when every connection that counts against a full cap is busy.
    fn admit(&mut self, peer: IpAddr, cap: usize, per_peer: usize) -> Option<Admitted> {
        if self.open.values().filter(|o| o.peer == peer).count() >= per_peer {
            self.evict(|o| o.peer == peer)?;
        }
        if self.open.len() >= cap {
            self.evict(|_| true)?;
        }
        let id = self.next;
        self.next += 1;
        let open = Open {
            peer,
            busy: Arc::new(AtomicUsize::new(0)),
            close: Arc::new(tokio::sync::Notify::new()),
        };
        let admitted = Admitted {
            id,
            busy: open.busy.clone(),
            close: open.close.clone(),
        };
        self.open.insert(id, open);
        Some(admitted)
    }

    /// Asks the oldest idle connection among `which` to close, and stops counting it.
    fn evict(&mut self, which: impl Fn(&Open) -> bool) -> Option<()> {
        let id = *self
            .open
            .iter()
            .find(|(_, o)| which(o) && o.busy.load(Ordering::Relaxed) == 0)?
            .0;
        let open = self.open.remove(&id)?;
        open.close.notify_one();
        Some(())
    }
}

/// Serves `router` on `listener` until `shutdown`. A failing `accept` (no file descriptors
/// left) pauses a little instead of spinning.
pub async fn serve(listener: Listener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let table = Arc::new(Mutex::new(Table::default()));
    let tls = listener.tls.map(|certificates| {
        // Renewed files are read off the handshake, by a task of their own.
        tokio::spawn(certificates.clone().keep_fresh(shutdown.clone()));
        tokio_rustls::TlsAcceptor::from(Arc::new(certificates.server_config()))
    });
    loop {
        tokio::select! {
            accepted = listener.socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let admitted = table
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .admit(peer.ip(), listener.connections, listener.per_peer);
                    let Some(admitted) = admitted else {
                        tracing::debug!(%peer, "every connection is busy; refused");
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let (router, tls, shutdown, table) =
                        (router.clone(), tls.clone(), shutdown.clone(), table.clone());
                    tokio::spawn(async move {
                        let id = admitted.id;
                        match tls {
                            None => connection(stream, peer, router, shutdown, admitted).await,
                            Some(tls) => {
                                let handshake = tokio::time::timeout(HEAD_TIMEOUT, tls.accept(stream));
                                tokio::select! {
                                    done = handshake => match done {
                                        Ok(Ok(stream)) => connection(stream, peer, router, shutdown, admitted).await,
                                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                                    },
                                    _ = admitted.close.notified() => {}
                                }
                            }
                        }
                        table.lock().unwrap_or_else(|e| e.into_inner()).open.remove(&id);
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

/// Counts a request in flight on its connection while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(busy: &Arc<AtomicUsize>) -> InFlight {
        busy.fetch_add(1, Ordering::Relaxed);
        InFlight(busy.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves HTTP/1.1 requests on one connection until the peer closes it, it idles past
/// [`HEAD_TIMEOUT`], it has lived [`LIFETIME`], or the daemon stops.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    admitted: Admitted,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let busy = admitted.busy.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let in_flight = InFlight::new(&busy);
        let answer = router.clone().oneshot(request);
        async move {
            let answer = answer.await;
            drop(in_flight);
            answer
        }
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
        // Closed to make room for a new connection while idle.
        _ = admitted.close.notified() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(GRACE, conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    /// At the cap the oldest idle connection makes room; a busy one never does; at its own
    /// cap a peer makes room from its own connections only.
    #[test]
    fn the_oldest_idle_connection_makes_room() {
        let mut t = Table::default();
        let a = t.admit(ip(1), 3, 2).unwrap();
        let b = t.admit(ip(2), 3, 2).unwrap();
        let _c = t.admit(ip(2), 3, 2).unwrap();
        a.busy.fetch_add(1, Ordering::Relaxed);
        // Full: a is busy, so b (the oldest idle) goes.
        let d = t.admit(ip(3), 3, 2).unwrap();
        assert!(!t.open.contains_key(&b.id));
        assert!(t.open.contains_key(&a.id));
        assert_eq!(t.open.len(), 3);
        // ip(1) at its own cap of 2 after one more: its only idle one makes room.
        let e = t.admit(ip(1), 4, 2).unwrap();
        let e2 = t.admit(ip(1), 4, 2).unwrap();
        assert!(!t.open.contains_key(&e.id));
        assert!(t.open.contains_key(&e2.id) && t.open.contains_key(&a.id));
        // Every connection busy: refused.
        for o in t.open.values() {
            o.busy.fetch_add(1, Ordering::Relaxed);
        }
        assert!(t.admit(ip(9), 3, 2).is_none());
        let _ = d;
    }
}
