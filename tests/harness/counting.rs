//! A counting proxy in front of the real registry: every request is forwarded unchanged and
//! recorded with when it came, its User-Agent (which names the replica that sent it) and its
//! repository, so a test can say who polled what, and how fast all of them together were.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub agent: String,
    pub method: String,
    /// `org/a` for `/v2/org/a/tags/list`; empty for `/v2/` and token requests.
    pub repository: String,
}

pub struct Counting {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Counting {
    pub async fn start(upstream: String) -> Counting {
        Counting::start_late(upstream, std::time::Duration::ZERO).await
    }

    /// [`Counting::start`], answering each request `late` after the registry did: what a
    /// daemon behind it reads is that much older than what one reading the registry reads.
    pub async fn start_late(upstream: String, late: std::time::Duration) -> Counting {
        let (listener, port, client) = super::referrers::in_front().await;
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (log, client, upstream) = (log.clone(), client.clone(), upstream.clone());
                async move {
                    let agent = headers
                        .get("user-agent")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    log.lock().unwrap().push(Seen {
                        at: Instant::now(),
                        agent,
                        method: method.to_string(),
                        repository: repository_of(uri.path()),
                    });
                    let answer =
                        super::referrers::forward(&client, &upstream, method, &uri, &headers, body)
                            .await;
                    tokio::time::sleep(late).await;
                    answer
                }
            },
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Counting { port, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request since `from`.
    pub fn since(&self, from: Instant) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.at >= from)
            .cloned()
            .collect()
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The repository a registry API path is about.
fn repository_of(path: &str) -> String {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return String::new();
    };
    for marker in ["/tags/", "/manifests/", "/blobs/", "/referrers/"] {
        if let Some((repository, _)) = rest.split_once(marker) {
            return repository.to_string();
        }
    }
    String::new()
}
