//! A fault-injecting proxy in front of the real registry: every request is forwarded as is,
//! unless a fault was queued for it (a 429, a 5xx, a slow answer, a hang-up) or the real
//! answer is to be cut short. For the end-to-end fault suite, where the daemon talks to a real
//! registry that misbehaves on demand.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Fault;

/// What happens to one request.
#[derive(Debug, Clone)]
pub enum Inject {
    /// Answer with this instead of asking the registry.
    Instead(Fault),
    /// Ask the registry, then send only half of its answer's body and hang up.
    Truncate,
}

pub struct FaultProxy {
    pub port: u16,
    queue: Arc<Mutex<VecDeque<Inject>>>,
    down: Arc<AtomicBool>,
    unavailable: Arc<AtomicBool>,
    injected: Arc<AtomicUsize>,
    /// When each request the registry answered was forwarded.
    forwarded: Arc<Mutex<Vec<std::time::Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: String) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let queue: Arc<Mutex<VecDeque<Inject>>> = Arc::default();
        let down = Arc::new(AtomicBool::new(false));
        let injected = Arc::new(AtomicUsize::new(0));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let unavailable = Arc::new(AtomicBool::new(false));
        let forwarded: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
        let (q, d, n) = (queue.clone(), down.clone(), injected.clone());
        let (u, f) = (unavailable.clone(), forwarded.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (q, d, n, client, upstream) = (
                    q.clone(),
                    d.clone(),
                    n.clone(),
                    client.clone(),
                    upstream.clone(),
                );
                let (u, f) = (u.clone(), f.clone());
                tokio::spawn(async move {
                    let Some((method, path, headers, body)) = read(&mut socket).await else {
                        return;
                    };
                    if d.load(Ordering::SeqCst) {
                        n.fetch_add(1, Ordering::SeqCst);
                        return; // hang up: the registry is down
                    }
                    if u.load(Ordering::SeqCst) {
                        n.fetch_add(1, Ordering::SeqCst);
                        let _ = socket.write_all(&raw(503, &[], b"", 0)).await;
                        let _ = socket.shutdown().await;
                        return;
                    }
                    let inject = q.lock().unwrap().pop_front();
                    if inject.is_some() {
                        n.fetch_add(1, Ordering::SeqCst);
                    }
                    let response = match inject {
                        Some(Inject::Instead(Fault::Hangup)) => return,
                        Some(Inject::Instead(Fault::Slow {
                            delay,
                            status,
                            body,
                        })) => {
                            tokio::time::sleep(delay).await;
                            raw(status, &[], body.as_bytes(), body.len())
                        }
                        Some(Inject::Instead(Fault::Respond {
                            status,
                            headers,
                            body,
                        })) => raw(status, &headers, body.as_bytes(), body.len()),
                        Some(Inject::Instead(Fault::Truncated { body })) => {
                            raw(200, &[], &body.as_bytes()[..body.len() / 2], body.len())
                        }
                        Some(Inject::Truncate) | None => {
                            f.lock().unwrap().push(std::time::Instant::now());
                            let mut req = client
                                .request(method.parse().unwrap(), format!("{upstream}{path}"))
                                .body(body);
                            for (k, v) in &headers {
                                if !matches!(k.as_str(), "host" | "content-length" | "connection") {
                                    req = req.header(k, v);
                                }
                            }
                            let Ok(resp) = req.send().await else { return };
                            let status = resp.status().as_u16();
                            let headers: Vec<(String, String)> = resp
                                .headers()
                                .iter()
                                .filter(|(k, _)| {
                                    !matches!(
                                        k.as_str(),
                                        "content-length" | "connection" | "transfer-encoding"
                                    )
                                })
                                .map(|(k, v)| {
                                    (k.to_string(), v.to_str().unwrap_or_default().to_string())
                                })
                                .collect();
                            let bytes = resp.bytes().await.unwrap_or_default();
                            let sent = if inject.is_some() {
                                &bytes[..bytes.len() / 2]
                            } else {
                                &bytes[..]
                            };
                            raw(status, &headers, sent, bytes.len())
                        }
                    };
                    let _ = socket.write_all(&response).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        FaultProxy {
            port,
            queue,
            down,
            unavailable,
            injected,
            forwarded,
            task,
        }
    }

    /// While `on`, every request is answered 503 (the registry is up, and failing).
    pub fn set_unavailable(&self, on: bool) {
        self.unavailable.store(on, Ordering::SeqCst);
    }

    /// When the first request forwarded to the registry after `at` was.
    pub fn first_forwarded_after(&self, at: std::time::Instant) -> Option<std::time::Instant> {
        self.forwarded
            .lock()
            .unwrap()
            .iter()
            .copied()
            .find(|t| *t >= at)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next requests meet these, one each, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Inject>) {
        self.queue.lock().unwrap().extend(faults);
    }

    /// Every request is hung up on while down.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }

    pub fn pending(&self) -> usize {
        self.queue.lock().unwrap().len()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Method, path, lower-cased headers, body.
type Head = (String, String, Vec<(String, String)>, Vec<u8>);

/// Reads one request off `socket`.
pub async fn read(socket: &mut tokio::net::TcpStream) -> Option<Head> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some((method, path, headers, body))
}

/// A response declaring `declared` body bytes (more than `body` to cut it short).
pub fn raw(status: u16, headers: &[(String, String)], body: &[u8], declared: usize) -> Vec<u8> {
    let mut out =
        format!("HTTP/1.1 {status} X\r\nContent-Length: {declared}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}
