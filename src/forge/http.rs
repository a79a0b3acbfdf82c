//! The HTTP side of a forge's API: one client per forge, where every answer is bounded (size,
//! pages, time) and credentials stay on the API's own origin.
//!
//! Redirects are never followed: an API that moves is a config change, and a redirect is how
//! a token would leave for another host. Pagination links are followed only on the same
//! origin, and only so far.
//!
//! A forge that asks to wait is obeyed: a 429, or GitHub's secondary rate limit (a 403 with
//! `Retry-After`, or with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset`), pauses every
//! request to that origin until the time given (at least a second, at most an hour; 60 s
//! when a 429 says nothing). Requests in the pause fail at once without being sent, so the
//! environment is retried next cycle and nothing else waits on this forge; GitHub may ban
//! integrations that keep sending.

// Numbers here come from forges: no arithmetic that can overflow or panic.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LINK};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use super::ForgeError;
use crate::bounded::{self, BodyError};

/// The largest answer read: forge objects are a few kilobytes, a page of them a few hundred.
pub const MAX_BODY: usize = 4 << 20;
/// The most pages of one list read; beyond that, what is looked for is not there in practice.
pub const MAX_PAGES: usize = 10;
const TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause a forge may ask for; a longer `Retry-After` is taken as this.
const MAX_PAUSE: Duration = Duration::from_secs(3600);
/// The pause after a 429 that says nothing of how long.
const DEFAULT_PAUSE: Duration = Duration::from_secs(60);

/// Until when each forge origin asked not to be sent anything. Process-wide, not per client:
/// clients are made per repository, and a forge's limits are per host and account.
static PAUSES: LazyLock<Mutex<HashMap<String, Instant>>> = LazyLock::new(Mutex::default);
/// Rate-limit answers received, per forge origin, for `/metrics`.
static RATE_LIMITED: LazyLock<Mutex<BTreeMap<String, u64>>> = LazyLock::new(Mutex::default);

/// Rate-limit answers received so far, per forge origin.
pub fn rate_limited() -> Vec<(String, u64)> {
    RATE_LIMITED
        .lock()
        .expect("forge rate lock")
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// How long the forge asked to wait, when `status` and `headers` are a rate limit.
fn asked_to_wait(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let retry_after = header("retry-after").and_then(|v| {
        v.parse::<u64>().map(Duration::from_secs).ok().or_else(|| {
            httpdate::parse_http_date(v).ok().map(|at| {
                at.duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
            })
        })
    });
    let reset = || {
        (header("x-ratelimit-remaining") == Some("0"))
            .then(|| header("x-ratelimit-reset")?.parse::<u64>().ok())
            .flatten()
            .map(|at| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                Duration::from_secs(at.saturating_sub(now))
            })
    };
    let wait = match status {
        StatusCode::TOO_MANY_REQUESTS => Some(retry_after.or_else(reset).unwrap_or(DEFAULT_PAUSE)),
        StatusCode::FORBIDDEN => retry_after.or_else(reset),
        _ => None,
    }?;
    Some(wait.clamp(Duration::from_secs(1), MAX_PAUSE))
}

/// One answer, read whole (up to [`MAX_BODY`]).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as `T`, or a clear error naming what was asked.
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, ForgeError> {
        serde_json::from_slice(&self.body).map_err(|e| ForgeError::Invalid {
            what: what.to_string(),
            reason: e.to_string(),
        })
    }

    /// The forge's own explanation of a refusal (`message`, GitLab's `message` list or
    /// `error`), cut short, for logs and `status`.
    pub fn message(&self) -> String {
        let value: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let mut text = match (&value["message"], &value["error"]) {
            (serde_json::Value::String(s), _) => s.clone(),
            (serde_json::Value::Array(list), _) => list
                .iter()
                .filter_map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            (serde_json::Value::Object(map), _) => map
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("; "),
            (_, serde_json::Value::String(s)) => s.clone(),
            _ => String::from_utf8_lossy(&self.body).into_owned(),
        };
        // GitHub puts the detail of a 422 in `errors[].message`.
        if let Some(errors) = value["errors"].as_array() {
            for e in errors.iter().filter_map(|e| e["message"].as_str()) {
                text.push_str(": ");
                text.push_str(e);
            }
        }
        let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
        text
    }
}

/// How requests are signed: a header and its value (the token is in the value).
#[derive(Clone)]
pub struct Auth {
    pub name: HeaderName,
    pub value: HeaderValue,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ***", self.name)
    }
}

#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
    /// `https://api.github.com`, `https://git.example.com/api/v1`: no trailing slash.
    base: Url,
    /// Headers every request carries (GitHub's API version, say).
    fixed: HeaderMap,
    /// How long one request may take, its answer's body included.
    timeout: Duration,
}

impl Api {
    pub fn new(base: &str, fixed: HeaderMap) -> Result<Api, ForgeError> {
        Api::with_timeout(base, fixed, TIMEOUT)
    }

    fn with_timeout(base: &str, fixed: HeaderMap, timeout: Duration) -> Result<Api, ForgeError> {
        let base = Url::parse(base).map_err(|e| ForgeError::Invalid {
            what: "api_url".into(),
            reason: e.to_string(),
        })?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("image-updater/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ForgeError::Network(e.to_string()))?;
        Ok(Api {
            client,
            base,
            fixed,
            timeout,
        })
    }

    /// The url of `path` (which starts with `/` and has its parts already encoded).
    pub fn url(&self, path: &str) -> Result<Url, ForgeError> {
        let text = format!("{}{path}", self.base.as_str().trim_end_matches('/'));
        Url::parse(&text).map_err(|e| ForgeError::Invalid {
            what: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// Sends one request to `url` (which must be on the API's origin) and reads the answer.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        auth: Option<&Auth>,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, ForgeError> {
        if url.origin() != self.base.origin() {
            return Err(ForgeError::Invalid {
                what: url.path().to_string(),
                reason: format!(
                    "{} is not the forge's origin; nothing is sent there",
                    url.origin().ascii_serialization()
                ),
            });
        }
        let origin = self.base.origin().ascii_serialization();
        let paused = PAUSES
            .lock()
            .expect("forge pause lock")
            .get(&origin)
            .copied();
        if let Some(left) = paused.map(|until| until.saturating_duration_since(Instant::now()))
            && !left.is_zero()
        {
            return Err(ForgeError::RateLimited {
                forge: origin,
                seconds: left.as_secs().max(1),
            });
        }
        let what = format!("{method} {}", url.path());
        let mut request = self.client.request(method, url).headers(self.fixed.clone());
        if let Some(auth) = auth {
            request = request.header(auth.name.clone(), auth.value.clone());
        }
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body).map_err(|e| ForgeError::Invalid {
                what: what.clone(),
                reason: e.to_string(),
            })?;
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ForgeError::Network(format!("{what}: {}", without_url(&e))))?;
        let status = response.status();
        let headers = response.headers().clone();
        if let Some(wait) = asked_to_wait(status, &headers) {
            tracing::warn!(forge = %origin, seconds = wait.as_secs(), "the forge asked to wait (HTTP {}); nothing is sent to it until then", status.as_u16());
            if let Some(until) = Instant::now().checked_add(wait) {
                PAUSES
                    .lock()
                    .expect("forge pause lock")
                    .insert(origin.clone(), until);
            }
            let mut counts = RATE_LIMITED.lock().expect("forge rate lock");
            let n = counts.entry(origin.clone()).or_default();
            *n = n.saturating_add(1);
            return Err(ForgeError::RateLimited {
                forge: origin,
                seconds: wait.as_secs(),
            });
        }
        let too_large = || ForgeError::Invalid {
            what: what.clone(),
            reason: format!("the answer is larger than {MAX_BODY} bytes"),
        };
        let body = match bounded::read(response, MAX_BODY).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => return Err(too_large()),
            Err(BodyError::Transport(e)) => {
                // A body that drips past the request's deadline is a timeout, and says so.
                let why = if e.is_timeout() {
                    format!(
                        "the answer's body did not arrive within {}s",
                        self.timeout.as_secs()
                    )
                } else {
                    without_url(&e)
                };
                return Err(ForgeError::Network(format!("{what}: {why}")));
            }
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// [`Api::send`] to `path` (on the API), requiring a 2xx answer: anything else is the
    /// forge refusing `what`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<Reply, ForgeError> {
        let reply = self.send(method, self.url(path)?, Some(auth), body).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(ForgeError::refused(what, &reply))
        }
    }

    /// Every item of a paginated list, following `Link: rel="next"` on the API's origin for
    /// at most [`MAX_PAGES`] pages.
    pub async fn list<T: DeserializeOwned>(
        &self,
        first: Url,
        auth: Option<&Auth>,
        what: &str,
    ) -> Result<Vec<T>, ForgeError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0usize;
        while let Some(url) = next.take() {
            pages = pages.saturating_add(1);
            if pages > MAX_PAGES {
                tracing::warn!(
                    what,
                    read = items.len(),
                    "the forge's list has more than {MAX_PAGES} pages; only the first {} items were read",
                    items.len()
                );
                break;
            }
            let reply = self.send(Method::GET, url, auth, None).await?;
            if !reply.status.is_success() {
                return Err(ForgeError::refused(what, &reply));
            }
            let page: Vec<T> = reply.json(what)?;
            items.extend(page);
            next = next_link(&reply.headers).filter(|u| u.origin() == self.base.origin());
        }
        Ok(items)
    }
}

/// reqwest's error without the url (whose query may carry what was asked for).
fn without_url(e: &reqwest::Error) -> String {
    let text = e.to_string();
    match e.url() {
        Some(u) => text.replace(u.as_str(), "(url)"),
        None => text,
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), if any.
pub fn next_link(headers: &HeaderMap) -> Option<Url> {
    for value in headers.get_all(LINK) {
        let text = value.to_str().ok()?;
        for link in text.split(',') {
            let (target, params) = link.split_once(';').unwrap_or((link, ""));
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if next {
                return Url::parse(target).ok();
            }
        }
    }
    None
}

/// A path segment, percent-encoded (GitLab's project path is one segment: `a%2Fb`).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_read_from_any_position() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(
                "<https://api.example.com/x?page=1>; rel=\"prev\", <https://api.example.com/x?page=3>; rel=\"next\"",
            ),
        );
        assert_eq!(
            next_link(&headers).unwrap().as_str(),
            "https://api.example.com/x?page=3"
        );
        headers.insert(LINK, HeaderValue::from_static("garbage"));
        assert_eq!(next_link(&headers), None);
    }

    /// A test forge on 127.0.0.1 serving `router`; its base url.
    async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://127.0.0.1:{port}")
    }

    /// An answer whose body drips a byte every 300 ms past the request's deadline ends as a
    /// timeout that says so, not as a decoding error.
    #[tokio::test]
    async fn a_dripping_body_is_a_timeout() {
        let router = axum::Router::new().route(
            "/pulls/1",
            axum::routing::get(|| async {
                let drip = futures_util::stream::unfold(0u8, |n| async move {
                    (n < 20).then_some(())?;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Some((Ok::<_, std::io::Error>(vec![b' ']), n + 1))
                });
                axum::body::Body::from_stream(drip)
            }),
        );
        let base = serve(router).await;
        let api = Api::with_timeout(&base, HeaderMap::new(), Duration::from_secs(1)).unwrap();
        let url = api.url("/pulls/1").unwrap();
        match api.send(Method::GET, url, None, None).await {
            Err(ForgeError::Network(why)) => {
                assert!(why.contains("did not arrive within 1s"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// A list longer than MAX_PAGES is cut there, with a warning that says how many items
    /// were read; no page past the limit is asked for.
    #[tokio::test]
    async fn a_list_is_cut_at_its_page_limit_and_says_so() {
        use std::collections::HashMap;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let origin = base.clone();
        let page_of =
            move |axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>| {
                let (counter, origin) = (counter.clone(), origin.clone());
                async move {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let page: u64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                    let next = format!("<{origin}/pulls?page={}>; rel=\"next\"", page + 1);
                    ([("link", next)], axum::Json(vec![page, page]))
                }
            };
        let router = axum::Router::new().route("/pulls", axum::routing::get(page_of));
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let api = Api::new(&base, HeaderMap::new()).unwrap();
        let logged = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = logged.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let items: Vec<u64> = api
            .list(api.url("/pulls").unwrap(), None, "listing pull requests")
            .await
            .unwrap();
        assert_eq!(items.len(), 2 * MAX_PAGES);
        assert_eq!(asked.load(Ordering::Relaxed), MAX_PAGES);
        let text = String::from_utf8(logged.lock().unwrap().clone()).unwrap();
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains("only the first 20 items were read"), "{text}");
    }

    /// A writer into a shared buffer, for reading what was logged.
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn waits_are_read_as_each_forge_sends_them() {
        let h = |pairs: &[(&'static str, String)]| {
            let mut headers = HeaderMap::new();
            for (k, v) in pairs {
                headers.insert(*k, HeaderValue::from_str(v).unwrap());
            }
            headers
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs());
        // A 429 with Retry-After (GitLab, Gitea, GitHub), seconds or a date; or with nothing.
        let cases = [
            (429, h(&[("retry-after", "30".into())]), Some(30)),
            (429, h(&[]), Some(60)),
            (429, h(&[("retry-after", "999999".into())]), Some(3600)),
            (429, h(&[("retry-after", "0".into())]), Some(1)),
            // GitHub's secondary limits: a 403 with Retry-After, or the reset of an exhausted
            // budget.
            (403, h(&[("retry-after", "45".into())]), Some(45)),
            (
                403,
                h(&[
                    ("x-ratelimit-remaining", "0".into()),
                    ("x-ratelimit-reset", (now + 120).to_string()),
                ]),
                Some(120),
            ),
            // A 403 that is a refusal, not a limit; a success with budget left.
            (403, h(&[("x-ratelimit-remaining", "12".into())]), None),
            (403, h(&[]), None),
            (200, h(&[("retry-after", "30".into())]), None),
        ];
        for (status, headers, expected) in cases {
            let got = secs(asked_to_wait(
                StatusCode::from_u16(status).unwrap(),
                &headers,
            ));
            // A reset is computed against the clock: allow the second it may tick.
            assert!(
                got == expected || got.zip(expected).is_some_and(|(g, e)| e.abs_diff(g) <= 1),
                "{status} {headers:?}: {got:?}"
            );
        }
        let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(90));
        let got = secs(asked_to_wait(
            StatusCode::TOO_MANY_REQUESTS,
            &h(&[("retry-after", date)]),
        ))
        .unwrap();
        assert!((88..=90).contains(&got), "{got}");
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("group/sub/app"), "group%2Fsub%2Fapp");
        assert_eq!(segment("image-updater/prod"), "image-updater%2Fprod");
    }
}
