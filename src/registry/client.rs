//! The HTTP side of a registry: one [`Client`] per configured registry, owning its connection
//! settings, credentials, tokens, rate limit and retry policy.
//!
//! Every request goes through [`Client::get`], which is where politeness lives: a per-registry
//! request rate, waiting out `Retry-After` on 429, refusing to spend the last of a registry's
//! pull budget, jittered and bounded retries of 5xx and timeouts, and the auth handshake.
//! Nothing above this layer retries, so the bounds here are the bounds.

// Numbers here come from registries, webhook senders and clocks: no arithmetic that can
// overflow or panic; every operation is checked or saturating.
#![deny(clippy::arithmetic_side_effects)]

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, HeaderMap, IF_NONE_MATCH, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};

use super::auth::{Challenge, Token, TokenResponse};
use super::budget::{Budget, SHORT_WINDOW};
use super::cache::MetadataCache;
pub use super::endpoint::{Endpoint, Tuning};
pub use super::error::RegistryError;
use super::metrics::{Metrics, RequestKind};
use super::tokens::TokenStore;
use crate::bounded::{self, BodyError};
use crate::config::CredentialRef;
use crate::secrets::{self, Credential};

/// A response that was read completely.
#[derive(Debug)]
pub struct Reply {
    /// Where the response came from, after any redirects.
    pub url: reqwest::Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Default)]
struct State {
    /// Set by a 429: no request is sent before this.
    blocked_until: Option<Instant>,
    budget: Budget,
    /// The last request failed every attempt without an answer, or with a 5xx: the registry
    /// is down until a request or a [`Client::probe`] gets an answer again.
    down: bool,
}

/// How long a [`Client::probe`] waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a cloud's failed sign-in is not tried again.
const FAILED_SIGN_IN_PAUSE: Duration = Duration::from_secs(30);
/// How long a registry whose implied cloud credentials nothing here has is read anonymously
/// before the cloud's chain is asked again (it may probe a metadata service each time).
const ANONYMOUS_PAUSE: Duration = Duration::from_secs(600);

/// A tag list's `ETag` and the tags it came with.
type Listed = (String, Arc<Vec<String>>);
/// A repository's complete tag list and when it was read.
type Recent = (Instant, Arc<Vec<String>>);

/// A client for one registry; cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    http: reqwest::Client,
    limiter: DefaultDirectRateLimiter,
    tuning: Tuning,
    metrics: Arc<Metrics>,
    cache: Arc<MetadataCache>,
    /// The resolved credential and when it was read.
    credential: tokio::sync::Mutex<Option<(Option<Credential>, Instant)>>,
    /// When a cloud's sign-in last failed, and why (`None`: it found nothing, and the
    /// registry is read anonymously).
    lease_failed: Mutex<Option<(Instant, Option<secrets::CredentialError>)>>,
    tokens: Arc<TokenStore>,
    /// The registry answered with a Basic challenge: send credentials up front.
    basic: AtomicBool,
    /// The realm and service of the registry's last bearer challenge: a token for another
    /// scope, or to replace an expired one, is asked for there directly, without first
    /// sending the request unauthenticated to be refused again.
    challenge: Mutex<Option<(String, Option<String>)>>,
    /// Single-page tag lists by URL with the `ETag` they came with, for conditional requests.
    listed: Mutex<std::collections::HashMap<String, Listed>>,
    /// Each repository's last complete tag list and when it was read, for a check a push
    /// event triggers ([`Client::recent_tags`]).
    recent: Mutex<std::collections::HashMap<String, Recent>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint)
            .finish()
    }
}

impl Client {
    /// A client whose tokens live in memory only.
    pub fn new(
        endpoint: Endpoint,
        tuning: Tuning,
        metrics: Arc<Metrics>,
        cache: Arc<MetadataCache>,
    ) -> Result<Client, RegistryError> {
        Client::with_tokens(
            endpoint,
            tuning,
            metrics,
            cache,
            Arc::new(TokenStore::in_memory()),
        )
    }

    /// A client that keeps its tokens in `tokens`, shared with other clients and saved.
    pub fn with_tokens(
        endpoint: Endpoint,
        tuning: Tuning,
        metrics: Arc<Metrics>,
        cache: Arc<MetadataCache>,
        tokens: Arc<TokenStore>,
    ) -> Result<Client, RegistryError> {
        let setup = |detail: String| RegistryError::Setup {
            registry: endpoint.name.clone(),
            detail,
        };
        if endpoint.base_url.starts_with("http://") && !endpoint.insecure {
            return Err(setup(format!(
                "{} is plain http; set insecure = true to allow it",
                endpoint.base_url
            )));
        }
        let insecure = endpoint.insecure;
        // Redirects are followed a few times, never from https to plain http (unless the
        // registry is configured insecure). reqwest drops Authorization when a redirect leaves
        // the host, and `get` never answers another origin's challenge with credentials.
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            let downgrade = attempt.url().scheme() == "http"
                && attempt.previous().iter().any(|u| u.scheme() == "https");
            if downgrade && !insecure {
                attempt.error("refusing a redirect from https to plain http")
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        });
        let agent = match &tuning.replica {
            Some(replica) => format!(
                "image-updater/{} (replica {replica})",
                env!("CARGO_PKG_VERSION")
            ),
            None => concat!("image-updater/", env!("CARGO_PKG_VERSION")).to_string(),
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(agent)
            .redirect(redirects)
            .timeout(tuning.request_timeout)
            .connect_timeout(tuning.connect_timeout)
            .tls_danger_accept_invalid_certs(endpoint.insecure);
        if let Some(ca) = &endpoint.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| setup(format!("cannot read ca_file {}: {e}", ca.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup(format!("ca_file {} is not PEM: {e}", ca.display())))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| setup(format!("cannot set up HTTP: {e}")))?;
        let per_second = endpoint.rate_limit.max(0.001);
        let quota = if per_second >= 1.0 {
            Quota::per_second(NonZeroU32::new(per_second as u32).unwrap_or(NonZeroU32::MIN))
        } else {
            Quota::with_period(Duration::from_secs_f64(1.0 / per_second)).expect("positive period")
        };
        Ok(Client {
            inner: Arc::new(Inner {
                endpoint,
                http,
                limiter: RateLimiter::direct(quota),
                tuning,
                metrics,
                cache,
                credential: tokio::sync::Mutex::new(None),
                lease_failed: Mutex::new(None),
                tokens,
                basic: AtomicBool::new(false),
                challenge: Mutex::new(None),
                listed: Mutex::new(std::collections::HashMap::new()),
                recent: Mutex::new(std::collections::HashMap::new()),
                state: Mutex::new(State::default()),
            }),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    pub fn name(&self) -> &str {
        &self.inner.endpoint.name
    }

    pub fn tuning(&self) -> &Tuning {
        &self.inner.tuning
    }

    pub fn cache(&self) -> &MetadataCache {
        &self.inner.cache
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// What the registry last said about its budget, while its window lasts.
    pub fn budget(&self) -> Budget {
        let mut s = self.inner.state.lock().expect("state lock");
        s.budget = s.budget.as_of(Instant::now());
        s.budget
    }

    /// Whether the registry was down at the last request: unreachable, or answering 5xx
    /// through every attempt.
    pub fn is_down(&self) -> bool {
        self.inner.state.lock().expect("state lock").down
    }

    fn set_down(&self, down: bool) {
        self.inner.state.lock().expect("state lock").down = down;
    }

    /// One cheap request, `GET /v2/` without credentials or retries, to learn whether a
    /// registry that was down answers again; says whether it does. Any answer but a 5xx or a
    /// 429 counts: a 401 is the registry asking who we are. It keeps to the rate limit, and
    /// costs one request where polling every image of a down registry would cost one each.
    pub async fn probe(&self) -> bool {
        let share = self.inner.tuning.share.load(Ordering::Relaxed).clamp(1, 64);
        for _ in 0..share {
            self.inner.limiter.until_ready().await;
        }
        let url = format!("{}/v2/", self.inner.endpoint.base_url);
        let status = match self
            .inner
            .http
            .get(&url)
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
        {
            Ok(resp) => resp.status(),
            Err(_) => {
                self.inner
                    .metrics
                    .request(self.name(), RequestKind::Probe, 0);
                return false;
            }
        };
        self.inner
            .metrics
            .request(self.name(), RequestKind::Probe, status.as_u16());
        let up = !status.is_server_error() && status != StatusCode::TOO_MANY_REQUESTS;
        if up {
            self.set_down(false);
        }
        up
    }

    /// Until when a 429 asked us to stay away, if that is still ahead.
    pub fn blocked_until(&self) -> Option<Instant> {
        let s = self.inner.state.lock().expect("state lock");
        s.blocked_until.filter(|t| *t > Instant::now())
    }

    /// The tag list last read from `url` and its `ETag`, when it was a single page.
    pub(crate) fn listed(&self, url: &str) -> Option<Listed> {
        self.inner
            .listed
            .lock()
            .expect("listed lock")
            .get(url)
            .cloned()
    }

    /// `repository`'s complete tag list, when one was read within [`RECENT_TAGS`].
    pub fn recent_tags(&self, repository: &str) -> Option<Arc<Vec<String>>> {
        let recent = self.inner.recent.lock().expect("recent lock");
        let (at, tags) = recent.get(repository)?;
        (at.elapsed() <= RECENT_TAGS).then(|| tags.clone())
    }

    /// Remembers `repository`'s complete tag list, just read.
    pub fn remember_tags(&self, repository: &str, tags: &Arc<Vec<String>>) {
        let mut recent = self.inner.recent.lock().expect("recent lock");
        if recent.len() >= MAX_LISTED && !recent.contains_key(repository) {
            recent.clear();
        }
        recent.insert(repository.to_string(), (Instant::now(), tags.clone()));
    }

    /// Adds tags reported pushed since to `repository`'s recent list, which keeps the time it
    /// was read (and, like a listing, at most `max_tags` tags).
    pub fn add_recent_tags<'a>(&self, repository: &str, pushed: impl IntoIterator<Item = &'a str>) {
        let max = self.tuning().max_tags;
        let mut recent = self.inner.recent.lock().expect("recent lock");
        if let Some((_, tags)) = recent.get_mut(repository) {
            for tag in pushed {
                if tags.len() < max && !tags.iter().any(|t| t == tag) {
                    Arc::make_mut(tags).push(tag.to_string());
                }
            }
        }
    }

    /// Remembers (or, without an `ETag`, forgets) the single-page tag list read from `url`.
    pub(crate) fn remember_listed(&self, url: &str, etag: Option<&str>, tags: &[String]) {
        let mut listed = self.inner.listed.lock().expect("listed lock");
        // An ETag is an opaque token of at most a few dozen characters; anything else is
        // not one to send back.
        match etag.filter(|e| e.len() <= 256 && e.bytes().all(|b| (0x21..0x7f).contains(&b))) {
            Some(etag) => {
                if listed.len() >= MAX_LISTED {
                    listed.clear();
                }
                listed.insert(url.to_string(), (etag.to_string(), Arc::new(tags.to_vec())));
            }
            None => {
                listed.remove(url);
            }
        }
    }

    pub(crate) fn error_invalid(&self, detail: impl Into<String>) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.name().to_string(),
            detail: detail.into(),
        }
    }

    /// An authorized request for `repository`'s pull scope, with retries and the auth
    /// handshake. `url` is absolute.
    pub async fn get(
        &self,
        kind: RequestKind,
        url: &str,
        repository: &str,
        accept: &[&str],
    ) -> Result<Reply, RegistryError> {
        self.get_if(kind, url, repository, accept, None).await
    }

    /// [`Client::get`], conditional on the answer's `ETag` no longer being `etag`: a
    /// registry that keeps it answers 304 without a body.
    pub async fn get_if(
        &self,
        kind: RequestKind,
        url: &str,
        repository: &str,
        accept: &[&str],
        etag: Option<&str>,
    ) -> Result<Reply, RegistryError> {
        if kind == RequestKind::ManifestGet {
            self.check_budget().await?;
        }
        let scope = super::auth::pull_scope(repository);
        let key = TokenStore::key(&self.inner.endpoint.base_url, &scope);
        let mut handshakes: u32 = 0;
        loop {
            let auth = match self.authorization(&key).await? {
                None if handshakes == 0 => self.token_directly(&key, &scope, repository).await,
                auth => auth,
            };
            let method = if kind == RequestKind::ManifestHead {
                Method::HEAD
            } else {
                Method::GET
            };
            let reply = self
                .send(kind, || {
                    let mut req = self.inner.http.request(method.clone(), url);
                    if !accept.is_empty() {
                        req = req.header(ACCEPT, accept.join(", "));
                    }
                    if let Some(etag) = etag {
                        req = req.header(IF_NONE_MATCH, etag);
                    }
                    if let Some(auth) = &auth {
                        req = req.header(AUTHORIZATION, auth.as_str());
                    }
                    req
                })
                .await?;
            if reply.status != StatusCode::UNAUTHORIZED {
                return Ok(reply);
            }
            let unauthorized = |detail: &str| RegistryError::Unauthorized {
                registry: self.name().to_string(),
                repository: repository.to_string(),
                detail: detail.to_string(),
            };
            // Credentials go to the registry's own origin only: a redirect elsewhere that asks
            // for them gets none.
            if !self.same_origin(&reply.url) {
                return Err(unauthorized(&format!(
                    "redirected to {}, which asks for credentials; they are sent only to the registry's own origin",
                    reply.url.origin().ascii_serialization()
                )));
            }
            // Credentials may have rotated (an ECR or GitHub App token): read them again.
            if auth.is_some() {
                self.forget_credential().await;
            }
            // A token may have been revoked or expired early: drop it, unless another caller
            // has already replaced it.
            if let Some(sent) = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
                self.inner.tokens.forget(&key, sent);
            }
            handshakes = handshakes.saturating_add(1);
            let challenge = reply
                .header(WWW_AUTHENTICATE.as_str())
                .and_then(Challenge::parse);
            if handshakes > 2 {
                return Err(unauthorized("the registry refused the credentials"));
            }
            match challenge {
                Some(Challenge::Basic) => {
                    let Some(Credential::Basic { username, password }) = self.credential().await?
                    else {
                        return Err(unauthorized(
                            "the registry requires a username and password, and none is configured",
                        ));
                    };
                    // Refused once already: try again only with a credential that changed
                    // since (it was read again above).
                    let fresh = basic_header(&username, password.expose());
                    if self.inner.basic.swap(true, Ordering::Relaxed)
                        && auth.as_deref() == Some(fresh.as_str())
                    {
                        return Err(unauthorized(
                            "the registry refused the username and password",
                        ));
                    }
                }
                Some(Challenge::Bearer { realm, service, .. }) => {
                    *self.inner.challenge.lock().expect("challenge lock") =
                        Some((realm.clone(), service.clone()));
                    // One refresh per scope at a time: whoever waited finds the new token.
                    let _refreshing = self.inner.tokens.refreshing(&key).await;
                    let fresh = self
                        .inner
                        .tokens
                        .get(&key)
                        .map(|t| format!("Bearer {}", t.expose()));
                    if fresh.is_some() && fresh != auth {
                        continue;
                    }
                    let token = self
                        .fetch_token(&realm, service.as_deref(), &scope, repository)
                        .await?;
                    self.inner.tokens.insert(&key, token);
                }
                None => {
                    return Err(unauthorized(
                        "401 without a usable WWW-Authenticate challenge",
                    ));
                }
            }
        }
    }

    /// The credential, read from its source at most every `credentials_ttl` (and again after
    /// the registry refused it), so rotated passwords and short-lived tokens from `exec:`
    /// helpers are picked up without a reload.
    async fn credential(&self) -> Result<Option<Credential>, RegistryError> {
        if let Some(reference) = &self.inner.endpoint.credentials
            && reference.is_cloud()
        {
            return self.leased(reference).await;
        }
        let mut slot = self.inner.credential.lock().await;
        if let Some((c, read_at)) = &*slot
            && read_at.elapsed() < self.inner.endpoint.credentials_ttl
        {
            return Ok(c.clone());
        }
        let resolved = match &self.inner.endpoint.credentials {
            Some(reference) => secrets::resolve(reference, &self.inner.endpoint.host)
                .await
                .map_err(|source| RegistryError::Credentials {
                    registry: self.name().to_string(),
                    source,
                })?,
            None => None,
        };
        *slot = Some((resolved.clone(), Instant::now()));
        Ok(resolved)
    }

    /// A cloud's registry password, kept in the token store (and so in the state dir, 0600)
    /// until its lease is due, and asked for by one caller at a time: the others wait for it.
    async fn leased(&self, reference: &CredentialRef) -> Result<Option<Credential>, RegistryError> {
        let key = self.lease_key(reference);
        let kept = |tokens: &TokenStore| {
            tokens
                .get(&key)
                .and_then(|text| Credential::from_text(text.expose()))
        };
        if let Some(credential) = kept(&self.inner.tokens) {
            return Ok(Some(credential));
        }
        let _one = self.inner.tokens.refreshing(&key).await;
        if let Some(credential) = kept(&self.inner.tokens) {
            return Ok(Some(credential));
        }
        let endpoint = &self.inner.endpoint;
        let registry = secrets::Registry {
            host: &endpoint.host,
            base_url: &endpoint.base_url,
        };
        let failed = |source| RegistryError::Credentials {
            registry: self.name().to_string(),
            source,
        };
        // A sign-in that failed a moment ago fails again at once: a cloud that hangs costs
        // each cycle one timeout, not one per request.
        if let Some((at, error)) = &*self.inner.lease_failed.lock().expect("lease lock") {
            match error {
                Some(error) if at.elapsed() < FAILED_SIGN_IN_PAUSE => {
                    return Err(failed(error.clone()));
                }
                None if at.elapsed() < ANONYMOUS_PAUSE => return Ok(None),
                _ => {}
            }
        }
        let lease = match secrets::lease(reference, registry).await {
            Ok(lease) => lease,
            // Credentials the config did not ask for, that nothing here has: the registry's
            // public repositories are still read, anonymously.
            Err(e) if e.nothing_found && endpoint.credentials_implied => {
                tracing::debug!(registry = self.name(), "{e}; reading anonymously");
                *self.inner.lease_failed.lock().expect("lease lock") = Some((Instant::now(), None));
                return Ok(None);
            }
            Err(e) => {
                *self.inner.lease_failed.lock().expect("lease lock") =
                    Some((Instant::now(), Some(e.clone())));
                return Err(failed(e));
            }
        };
        *self.inner.lease_failed.lock().expect("lease lock") = None;
        let Some(lease) = lease else {
            return Ok(None);
        };
        let now = Instant::now();
        let left = lease
            .renew_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        self.inner.tokens.insert(
            &key,
            Token {
                value: secrets::Secret::new(lease.credential.clone().into_text()),
                refresh_at: now.checked_add(left).unwrap_or(now),
            },
        );
        Ok(Some(lease.credential))
    }

    /// Where a cloud's password for this registry is kept: under the registry's origin, so
    /// it is only ever sent back there.
    fn lease_key(&self, reference: &CredentialRef) -> String {
        TokenStore::key(
            &self.inner.endpoint.base_url,
            &format!("credentials {reference}"),
        )
    }

    async fn forget_credential(&self) {
        *self.inner.credential.lock().await = None;
        if let Some(reference) = &self.inner.endpoint.credentials
            && reference.is_cloud()
        {
            self.inner.tokens.remove(&self.lease_key(reference));
        }
    }

    /// Whether `url` is on the registry's own origin (scheme, host and port of `api_url`).
    pub(crate) fn same_origin(&self, url: &reqwest::Url) -> bool {
        reqwest::Url::parse(&self.inner.endpoint.base_url)
            .is_ok_and(|base| base.origin() == url.origin())
    }

    /// The `Authorization` header for a request under the token `key`, if we have one.
    async fn authorization(&self, key: &str) -> Result<Option<String>, RegistryError> {
        if let Some(token) = self.inner.tokens.get(key) {
            return Ok(Some(format!("Bearer {}", token.expose())));
        }
        let basic = self.inner.basic.load(Ordering::Relaxed);
        Ok(match self.credential().await? {
            Some(Credential::Basic { username, password }) if basic => {
                Some(basic_header(&username, password.expose()))
            }
            Some(Credential::Bearer(token)) => Some(format!("Bearer {}", token.expose())),
            _ => None,
        })
    }

    /// A token for `scope` from the realm of the registry's last bearer challenge, when there
    /// was one: what a 401 would ask for, without the 401. `None` when there was none, or the
    /// token service did not give one (the request then goes without, and its 401 says why).
    async fn token_directly(&self, key: &str, scope: &str, repository: &str) -> Option<String> {
        let (realm, service) = self
            .inner
            .challenge
            .lock()
            .expect("challenge lock")
            .clone()?;
        let _refreshing = self.inner.tokens.refreshing(key).await;
        if let Some(token) = self.inner.tokens.get(key) {
            return Some(format!("Bearer {}", token.expose()));
        }
        match self
            .fetch_token(&realm, service.as_deref(), scope, repository)
            .await
        {
            Ok(token) => {
                let header = format!("Bearer {}", token.value.expose());
                self.inner.tokens.insert(key, token);
                Some(header)
            }
            Err(e) => {
                tracing::debug!(registry = %self.name(), error = %e, "no token from the last challenge's realm; asking the registry");
                *self.inner.challenge.lock().expect("challenge lock") = None;
                None
            }
        }
    }

    /// Trades credentials (or nothing, for anonymous pulls) for a token at `realm`.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        repository: &str,
    ) -> Result<Token, RegistryError> {
        let mut url = reqwest::Url::parse(realm)
            .map_err(|_| self.error_invalid(format!("token realm `{realm}` is not a URL")))?;
        if realm.starts_with("http://") && !self.inner.endpoint.insecure {
            return Err(self.error_invalid(format!(
                "token realm {realm} is plain http; set insecure = true to allow it"
            )));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = service {
                q.append_pair("service", service);
            }
            q.append_pair("scope", scope);
        }
        let credential = self.credential().await?;
        let reply = self
            .send(RequestKind::Token, || {
                let req = self.inner.http.get(url.clone());
                match &credential {
                    Some(Credential::Basic { username, password }) => {
                        req.header(AUTHORIZATION, basic_header(username, password.expose()))
                    }
                    _ => req,
                }
            })
            .await
            .map_err(|e| match e {
                // Say which server is down or failing: the token service, not the registry.
                RegistryError::Unreachable {
                    registry,
                    attempts,
                    detail,
                } => RegistryError::Unreachable {
                    registry,
                    attempts,
                    detail: format!(
                        "token service {}: {detail}",
                        url.origin().ascii_serialization()
                    ),
                },
                RegistryError::Server {
                    registry,
                    status,
                    attempts,
                } => RegistryError::Unreachable {
                    registry,
                    attempts,
                    detail: format!(
                        "token service {} answered {status}",
                        url.origin().ascii_serialization()
                    ),
                },
                other => other,
            })?;
        if !reply.status.is_success() {
            // A refused password may have been revoked or have expired early (a cloud's):
            // the next request reads it again.
            if reply.status == StatusCode::UNAUTHORIZED && credential.is_some() {
                self.forget_credential().await;
            }
            return Err(RegistryError::Unauthorized {
                registry: self.name().to_string(),
                repository: repository.to_string(),
                detail: format!("the token service answered {}", reply.status.as_u16()),
            });
        }
        let parsed: TokenResponse = serde_json::from_slice(&reply.body)
            .map_err(|e| self.error_invalid(format!("token response is not valid JSON: {e}")))?;
        parsed
            .into_token(Instant::now())
            .ok_or_else(|| self.error_invalid("token response has no token"))
    }

    /// Whether a manifest may be fetched: not while the registry's pull budget is down to its
    /// reserve. A window that ends within [`SHORT_WINDOW`] is waited out (the budget is unknown
    /// again after it, and the request goes); a longer one is an error for the image.
    async fn check_budget(&self) -> Result<(), RegistryError> {
        let budget = self.budget();
        if let (Some(remaining), Some(limit)) = (budget.remaining, budget.limit)
            && remaining <= self.inner.tuning.budget_reserve
        {
            let now = Instant::now();
            if let Some(at) = budget.resets_at
                && at.saturating_duration_since(now) <= SHORT_WINDOW
            {
                tokio::time::sleep_until(at.into()).await;
                return Ok(());
            }
            return Err(RegistryError::BudgetExhausted {
                registry: self.name().to_string(),
                remaining,
                limit,
            });
        }
        Ok(())
    }

    /// Sends with the rate limit and bounded retries; returns any response that is not a 429,
    /// a 5xx or a transport failure, with its body read completely.
    async fn send(
        &self,
        kind: RequestKind,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Reply, RegistryError> {
        let tuning = &self.inner.tuning;
        let registry = self.name().to_string();
        let mut last_failure = String::new();
        let mut last_status = None;
        for attempt in 1..=tuning.attempts {
            self.wait_if_blocked().await?;
            // A replica's part of the registry's rate: one slot per replica sharing it.
            let share = tuning.share.load(Ordering::Relaxed).clamp(1, 64);
            for _ in 0..share {
                self.inner.limiter.until_ready().await;
            }
            let outcome = match build().send().await {
                Ok(resp) => self.read(resp).await,
                Err(e) => Err((0, describe(&e))),
            };
            let retry_in = match outcome {
                Ok(reply) => {
                    self.inner
                        .metrics
                        .request(&registry, kind, reply.status.as_u16());
                    self.observe_budget(&reply.headers);
                    let status = reply.status;
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let wait = retry_after(&reply.headers);
                        let now = Instant::now();
                        let until = now
                            .checked_add(wait.unwrap_or_else(|| self.backoff(attempt)))
                            .unwrap_or(now);
                        self.inner.state.lock().expect("state lock").blocked_until = Some(until);
                        if wait.is_some() {
                            self.budget_until(until);
                        }
                        if attempt == tuning.attempts
                            || wait.is_some_and(|w| w > tuning.max_retry_after)
                        {
                            return Err(RegistryError::RateLimited {
                                registry,
                                retry_after: wait,
                            });
                        }
                        // wait_if_blocked does the waiting, and counts it.
                        last_status = Some(429);
                        continue;
                    }
                    if status.is_server_error() {
                        last_status = Some(status.as_u16());
                        self.backoff(attempt)
                    } else {
                        self.set_down(false);
                        return Ok(reply);
                    }
                }
                Err((status, detail)) => {
                    self.inner.metrics.request(&registry, kind, status);
                    last_status = None;
                    last_failure = detail;
                    self.backoff(attempt)
                }
            };
            if attempt < tuning.attempts {
                tracing::debug!(registry = %registry, attempt, "retrying in {:?}", retry_in);
                tokio::time::sleep(retry_in).await;
            }
        }
        // No answer, or only server errors, through every attempt.
        if last_status != Some(429) && !last_failure.starts_with(BODY_CUT_SHORT) {
            self.set_down(true);
        }
        Err(match last_status {
            Some(429) => RegistryError::RateLimited {
                registry,
                retry_after: None,
            },
            Some(status) => RegistryError::Server {
                registry,
                status,
                attempts: tuning.attempts,
            },
            None if last_failure.starts_with(BODY_CUT_SHORT) => RegistryError::InvalidResponse {
                registry,
                detail: format!("{last_failure} ({} attempts)", tuning.attempts),
            },
            None => RegistryError::Unreachable {
                registry,
                attempts: tuning.attempts,
                detail: last_failure,
            },
        })
    }

    /// Reads a body completely and within the size bound. A body that ends early is a
    /// transport failure, to be retried, never a short answer.
    async fn read(&self, resp: reqwest::Response) -> Result<Reply, (u16, String)> {
        let status = resp.status();
        let headers = resp.headers().clone();
        let url = resp.url().clone();
        let limit = self.inner.tuning.max_body;
        let body = match bounded::read(resp, limit).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return Err((
                    status.as_u16(),
                    format!("response larger than {limit} bytes"),
                ));
            }
            Err(BodyError::Transport(e)) => {
                return Err((
                    status.as_u16(),
                    format!("{BODY_CUT_SHORT}: {}", describe(&e)),
                ));
            }
        };
        Ok(Reply {
            url,
            status,
            headers,
            body,
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let tuning = &self.inner.tuning;
        let ceiling = tuning
            .base_delay
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(tuning.max_delay);
        // Full jitter: many daemons retrying in step would hit a recovering registry together.
        ceiling.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    async fn wait_if_blocked(&self) -> Result<(), RegistryError> {
        let Some(until) = self.blocked_until() else {
            return Ok(());
        };
        let wait = until.saturating_duration_since(Instant::now());
        if wait > self.inner.tuning.max_retry_after {
            return Err(RegistryError::RateLimited {
                registry: self.name().to_string(),
                retry_after: Some(wait),
            });
        }
        self.inner.metrics.waited(self.name(), wait);
        tracing::info!(registry = %self.name(), "rate limited: waiting {:.1}s", wait.as_secs_f64());
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn observe_budget(&self, headers: &HeaderMap) {
        let Some(seen) = Budget::from_headers(headers, Instant::now()) else {
            return;
        };
        let mut s = self.inner.state.lock().expect("state lock");
        s.budget = Budget {
            remaining: seen.remaining.or(s.budget.remaining),
            limit: seen.limit.or(s.budget.limit),
            resets_at: seen.resets_at,
        };
        if s.budget.is_low() {
            tracing::warn!(registry = %self.name(), remaining = ?s.budget.remaining, limit = ?s.budget.limit, "registry request budget is low");
        }
    }

    /// A 429's `Retry-After` says when the registry takes requests again: the budget it
    /// announced holds no longer than that.
    fn budget_until(&self, until: Instant) {
        let mut s = self.inner.state.lock().expect("state lock");
        if s.budget.resets_at.is_none_or(|at| at > until) {
            s.budget.resets_at = Some(until);
        }
    }
}

const BODY_CUT_SHORT: &str = "response body cut short";

/// The longest a `Retry-After` is honoured: a registry asking for more is left alone this long,
/// then asked again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Tag lists kept for conditional requests, and repositories' recent tag lists, at most.
const MAX_LISTED: usize = 20_000;
/// How long a repository's tag list stands in for a listing in a check a push event
/// triggers: a few default intervals. It is only ever trusted for a pushed tag that wins.
const RECENT_TAGS: Duration = Duration::from_secs(30 * 60);
/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;

fn basic_header(username: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// `Retry-After` as seconds or an HTTP date, at most [`MAX_RETRY_AFTER`].
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A transport error in one line, without the URL (which may carry a token service's query).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body cut short"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut root = None;
    while let Some(s) = source {
        root = Some(s.to_string());
        source = s.source();
    }
    match root {
        // What rustls says when an https client meets a plain-http server.
        Some(r) if r.contains("InvalidContentType") || r.contains("corrupt message") => format!(
            "{kind}: the server does not speak TLS; if it is plain http, write api_url = \"http://...\" with insecure = true (--insecure for `test`)"
        ),
        Some(r) => format!("{kind}: {r}"),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        h.insert(RETRY_AFTER, httpdate::fmt_http_date(later).parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
