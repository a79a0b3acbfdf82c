//! The OCI 1.1 referrers API (`GET /v2/NAME/referrers/DIGEST`, distribution spec 1.1), in
//! front of the real registry: Debian's distribution registry predates it, so this answers
//! that one endpoint as the spec describes (an image index of the manifests whose `subject`
//! is the digest, `application/vnd.oci.image.index.v1+json`) and forwards everything else to
//! the registry unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub struct Referrers {
    pub port: u16,
    /// Descriptors by subject digest.
    known: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Referrers {
    pub async fn start(upstream: String) -> Referrers {
        let (listener, port, client) = in_front().await;
        let known: Arc<Mutex<HashMap<String, Vec<Value>>>> = Arc::default();
        let k = known.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (k, client, upstream) = (k.clone(), client.clone(), upstream.clone());
                async move {
                    let path = uri.path().to_string();
                    if method == Method::GET
                        && let Some((_, digest)) = path.split_once("/referrers/")
                    {
                        let manifests = k.lock().unwrap().get(digest).cloned().unwrap_or_default();
                        let index = json!({
                            "schemaVersion": 2,
                            "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": manifests,
                        });
                        return (
                            StatusCode::OK,
                            [("content-type", "application/vnd.oci.image.index.v1+json")],
                            index.to_string(),
                        )
                            .into_response();
                    }
                    // A manifest naming a subject is listed among its referrers, and the answer
                    // says so with `OCI-Subject`, as the spec asks of a registry with the API.
                    let subject = (method == Method::PUT && path.contains("/manifests/"))
                        .then(|| serde_json::from_slice::<Value>(&body).ok())
                        .flatten()
                        .filter(|m| m["subject"]["digest"].is_string());
                    let mut answer =
                        forward(&client, &upstream, method, &uri, &headers, body.clone()).await;
                    if let Some(manifest) = subject
                        && answer.status().is_success()
                    {
                        use sha2::Digest as _;
                        let digest =
                            format!("sha256:{:x}", sha2::Sha256::digest(&body));
                        let subject = manifest["subject"]["digest"].as_str().unwrap().to_string();
                        let artifact_type = manifest
                            .get("artifactType")
                            .unwrap_or(&manifest["config"]["mediaType"])
                            .clone();
                        k.lock().unwrap().entry(subject.clone()).or_default().push(json!({
                            "mediaType": manifest["mediaType"],
                            "digest": digest,
                            "size": body.len(),
                            "artifactType": artifact_type,
                            "annotations": manifest.get("annotations").cloned().unwrap_or(json!({})),
                        }));
                        answer
                            .headers_mut()
                            .insert("oci-subject", subject.parse().unwrap());
                    }
                    answer
                }
            },
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Referrers { port, known, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Lists `descriptor` among the referrers of `subject`.
    pub fn refer(&self, subject: &str, descriptor: Value) {
        self.known
            .lock()
            .unwrap()
            .entry(subject.to_string())
            .or_default()
            .push(descriptor);
    }
}

impl Drop for Referrers {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener on a free loopback port for a server in front of the registry, its port, and
/// the client that passes requests on (redirects are the daemon's to follow, not this one's).
pub async fn in_front() -> (tokio::net::TcpListener, u16, reqwest::Client) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (listener, port, client)
}

/// Sends the request on to `upstream` as it came, and its answer back as it came.
pub async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let url = format!(
        "{upstream}{}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut request = client.request(method, url).body(body.to_vec());
    for (name, value) in headers {
        if name != "host" {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.unwrap();
    let status = answer.status();
    let mut out = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" && name != "connection" {
            out.insert(name, value.clone());
        }
    }
    let bytes = answer.bytes().await.unwrap();
    (status, out, bytes).into_response()
}
