//! A hostile peer written for the tests: an HTTP server on a loopback address whose every
//! answer a test decides, and which records everything it receives (paths and headers), so a
//! test can show that a credential never reached it.
//!
//! Bound to `127.0.0.2` it is "another host" as far as origins go, while traffic stays on
//! loopback.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;

use super::proxy;

/// One request as the peer received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer: status, headers, body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);
pub type Handler = Arc<dyn Fn(&Seen, usize) -> Answer + Send + Sync>;

pub struct Peer {
    pub ip: String,
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Peer {
    /// Serves on `ip` (a loopback address); `handler` gets each request and its number (from 0).
    pub async fn start(ip: &str, handler: Handler) -> Peer {
        let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (log, handler) = (log.clone(), handler.clone());
                tokio::spawn(async move {
                    let Some((method, path, headers, _)) = proxy::read(&mut socket).await else {
                        return;
                    };
                    let request = Seen {
                        method,
                        path,
                        headers,
                    };
                    let n = {
                        let mut log = log.lock().unwrap();
                        log.push(request.clone());
                        log.len() - 1
                    };
                    let (status, headers, body) = handler(&request, n);
                    let response = proxy::raw(status, &headers, &body, body.len());
                    let _ = socket.write_all(&response).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Peer {
            ip: ip.to_string(),
            port,
            seen,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Every `Authorization` header it was sent.
    pub fn authorizations(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|r| r.header("authorization").map(String::from))
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JSON answer.
pub fn json(status: u16, body: &str, extra: &[(&str, &str)]) -> Answer {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    (status, headers, body.as_bytes().to_vec())
}
