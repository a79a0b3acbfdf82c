//! Pull (merge) requests on the forge that hosts a repository: GitHub, GitLab, and Gitea or
//! Forgejo, through each one's REST API.
//!
//! The branch work (the update branch, rebuilt from the environment's branch) is git's, in
//! [`crate::writeback::request`]; this module only talks to the API: find the open request,
//! open one, edit its title and body, comment and close it, merge it when the forge says its
//! rules are met.
//!
//! - [`Forge`]: what one forge kind does; [`github`], [`gitlab`], [`gitea`] each implement it
//!   with that API's endpoints and shapes. A new forge is one file, and one line in
//!   [`forge_of`].
//! - [`Client`]: what every forge shares: credentials, bounds on the text sent, adopting a
//!   request another writer opened.
//! - [`http`]: bounded requests on the API's origin, pagination.
//! - [`app`]: GitHub App installation tokens.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{ForgeAuth, ForgeKind, PullRequest};
use crate::secrets::{self, Credential};

pub mod app;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod http;

use http::{Auth, Reply};

/// How long a token read from its source is used before it is read again (a rotated secret
/// is picked up without a reload).
const TOKEN_TTL: Duration = Duration::from_secs(300);
/// The longest title sent: forges cut or refuse longer ones (GitHub: 256).
pub const MAX_TITLE: usize = 250;
/// The longest body sent: GitHub refuses bodies over 65,536 characters.
pub const MAX_BODY_TEXT: usize = 60_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    #[error("the forge cannot be reached: {0}")]
    Network(String),
    #[error("the forge refused {what}: HTTP {status}: {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    #[error("the forge's answer to {what} is not usable: {reason}")]
    Invalid { what: String, reason: String },
    #[error("forge credentials: {0}")]
    Credentials(String),
    #[error(
        "the forge {forge} asked to wait {seconds}s more (rate limited); nothing is sent to it until then"
    )]
    RateLimited { forge: String, seconds: u64 },
}

impl ForgeError {
    /// Whether the forge said the thing asked for does not exist (HTTP 404): a request
    /// deleted by an admin, a repository moved, access lost.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ForgeError::Refused { status: 404, .. })
    }

    pub fn refused(what: &str, reply: &Reply) -> ForgeError {
        ForgeError::Refused {
            what: what.to_string(),
            status: reply.status.as_u16(),
            message: reply.message(),
        }
    }
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    Merged,
    /// Closed without being merged.
    Closed,
}

/// A pull (merge) request as the forge reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// GitHub's and Gitea's number, GitLab's `iid`.
    pub number: u64,
    /// Where people read it.
    pub url: String,
    pub state: State,
    /// The commit the request's head branch is at.
    pub head: Option<String>,
    /// A draft: GitHub's `draft`, GitLab's `Draft:` and Gitea's `WIP:` title.
    pub draft: bool,
    /// GitHub's GraphQL id of the pull request (marking it ready is GraphQL only).
    pub node_id: Option<String>,
    /// Whether the forge says every rule for merging is met (GitHub's `mergeable_state` is
    /// `clean`); `None` where the forge merges by itself once they are.
    pub ready: Option<bool>,
}

/// A request to open or to bring up to date.
#[derive(Debug, Clone)]
pub struct Proposal<'a> {
    /// The update branch.
    pub head: &'a str,
    /// The environment's branch.
    pub base: &'a str,
    pub title: String,
    pub body: String,
    pub settings: &'a PullRequest,
}

/// What asking for a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    Merged,
    /// The forge merges it itself once its checks pass.
    Scheduled,
    /// Not yet: the forge's rules are not met, and why.
    NotYet(String),
}

/// An answer from a forge, later.
pub type Answer<'a, T> = BoxFuture<'a, Result<T, ForgeError>>;

/// What every call to a forge needs: its API, the signed-in header, and the project.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub api: &'a http::Api,
    pub auth: &'a Auth,
    pub project: &'a str,
}

/// One forge kind's API for pull (merge) requests.
pub trait Forge: Send + Sync {
    /// Headers every request carries (GitHub's media type and API version).
    fn headers(&self) -> HeaderMap {
        HeaderMap::new()
    }

    /// The header a token is sent in, and its value.
    fn authorization(&self, token: &str) -> (HeaderName, String);

    /// The open request from `head` into `base`, if there is one.
    fn find_open<'a>(
        &'a self,
        call: Call<'a>,
        head: &'a str,
        base: &'a str,
    ) -> Answer<'a, Option<Request>>;

    fn get<'a>(&'a self, call: Call<'a>, number: u64) -> Answer<'a, Request>;

    /// Opens a request; `None` when the forge says one is open already.
    fn open<'a>(
        &'a self,
        call: Call<'a>,
        proposal: &'a Proposal<'a>,
    ) -> Answer<'a, Option<Request>>;

    /// Asks `reviewers` to review request `number`. By default nothing: a forge that names
    /// reviewers when it opens a request (GitLab) has done so.
    fn request_reviews<'a>(
        &'a self,
        _call: Call<'a>,
        _number: u64,
        _reviewers: &'a [String],
    ) -> Answer<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// Takes a request out of draft.
    fn mark_ready<'a>(&'a self, call: Call<'a>, request: &'a Request) -> Answer<'a, ()>;

    fn edit<'a>(
        &'a self,
        call: Call<'a>,
        number: u64,
        title: &'a str,
        body: &'a str,
    ) -> Answer<'a, ()>;

    /// Comments on a request, then closes it.
    fn close<'a>(&'a self, call: Call<'a>, number: u64, comment: &'a str) -> Answer<'a, ()>;

    /// Merges `request` at exactly `head`, or has the forge merge it once its rules are met.
    fn merge<'a>(
        &'a self,
        call: Call<'a>,
        request: &'a Request,
        head: &'a str,
        settings: &'a PullRequest,
    ) -> Answer<'a, Merge>;
}

/// The calls every forge's file implements with free functions of the same arguments
/// (`find_open`, `get`, `open`, `edit`, `close`), written once for each [`Forge`] impl.
macro_rules! same_calls {
    () => {
        fn find_open<'a>(
            &'a self,
            call: $crate::forge::Call<'a>,
            head: &'a str,
            base: &'a str,
        ) -> $crate::forge::Answer<'a, Option<$crate::forge::Request>> {
            Box::pin(find_open(call.api, call.auth, call.project, head, base))
        }

        fn get<'a>(
            &'a self,
            call: $crate::forge::Call<'a>,
            number: u64,
        ) -> $crate::forge::Answer<'a, $crate::forge::Request> {
            Box::pin(get(call.api, call.auth, call.project, number))
        }

        fn open<'a>(
            &'a self,
            call: $crate::forge::Call<'a>,
            proposal: &'a $crate::forge::Proposal<'a>,
        ) -> $crate::forge::Answer<'a, Option<$crate::forge::Request>> {
            Box::pin(open(call.api, call.auth, call.project, proposal))
        }

        fn edit<'a>(
            &'a self,
            call: $crate::forge::Call<'a>,
            number: u64,
            title: &'a str,
            body: &'a str,
        ) -> $crate::forge::Answer<'a, ()> {
            Box::pin(edit(call.api, call.auth, call.project, number, title, body))
        }

        fn close<'a>(
            &'a self,
            call: $crate::forge::Call<'a>,
            number: u64,
            comment: &'a str,
        ) -> $crate::forge::Answer<'a, ()> {
            Box::pin(close(call.api, call.auth, call.project, number, comment))
        }
    };
}
pub(crate) use same_calls;

/// The forge of each kind.
pub fn forge_of(kind: ForgeKind) -> Box<dyn Forge> {
    match kind {
        ForgeKind::GitHub => Box::new(github::GitHub),
        ForgeKind::GitLab => Box::<gitlab::GitLab>::default(),
        ForgeKind::Gitea => Box::new(gitea::Gitea),
    }
}

/// One forge's API for one repository.
pub struct Client {
    pub kind: ForgeKind,
    forge: Box<dyn Forge>,
    project: String,
    api: http::Api,
    auth: ForgeAuth,
    /// The API's host, for the credential lookup of `docker-config` style sources.
    host: String,
    token: Mutex<Option<(Auth, Instant)>>,
    app: Option<app::Installation>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("kind", &self.kind)
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(forge: &crate::config::Forge) -> Result<Client, ForgeError> {
        let kind = forge_of(forge.kind);
        let api = http::Api::new(&forge.api_url, kind.headers())?;
        let host = api.url("/")?.host_str().unwrap_or_default().to_string();
        let app = match &forge.auth {
            ForgeAuth::GitHubApp {
                app_id,
                private_key,
                installation_id,
            } => Some(app::Installation::new(
                *app_id,
                private_key.clone(),
                *installation_id,
            )),
            _ => None,
        };
        Ok(Client {
            kind: forge.kind,
            forge: kind,
            project: forge.project.clone(),
            api,
            auth: forge.auth.clone(),
            host,
            token: Mutex::new(None),
            app,
        })
    }

    /// What the forge calls its requests.
    pub fn noun(&self) -> &'static str {
        self.kind.request_noun()
    }

    /// The header that signs a request, from a token read at most [`TOKEN_TTL`] ago.
    async fn auth(&self) -> Result<Auth, ForgeError> {
        if let Some(app) = &self.app {
            let token = app.token(&self.api, &self.project).await?;
            return self.header(&token);
        }
        if let Some((auth, at)) = &*self.token.lock().expect("token lock")
            && at.elapsed() < TOKEN_TTL
        {
            return Ok(auth.clone());
        }
        let reference = match &self.auth {
            ForgeAuth::Token(r) | ForgeAuth::Repository(r) => r,
            ForgeAuth::GitHubApp { .. } => unreachable!("apps are handled above"),
        };
        let token = match secrets::resolve(reference, &self.host)
            .await
            .map_err(|e| ForgeError::Credentials(e.to_string()))?
        {
            // `user:token`: the token is the password.
            Some(Credential::Basic { password, .. }) => password.expose().to_string(),
            Some(Credential::Bearer(token)) => token.expose().to_string(),
            None => {
                return Err(ForgeError::Credentials(format!(
                    "{reference} holds no token"
                )));
            }
        };
        let auth = self.header(&token)?;
        *self.token.lock().expect("token lock") = Some((auth.clone(), Instant::now()));
        Ok(auth)
    }

    /// The open request from `head` into `base`, if there is one.
    pub async fn find_open(&self, head: &str, base: &str) -> Result<Option<Request>, ForgeError> {
        let auth = self.auth().await?;
        self.forge.find_open(self.call(&auth), head, base).await
    }

    pub async fn get(&self, number: u64) -> Result<Request, ForgeError> {
        let auth = self.auth().await?;
        self.forge.get(self.call(&auth), number).await
    }

    /// Asks the configured reviewers to review request `number` (GitHub and Gitea; GitLab's
    /// are named when it is opened). The request is there either way: a refusal (a reviewer
    /// without access, say) is for the caller to show and ask again.
    pub async fn request_reviews(
        &self,
        number: u64,
        reviewers: &[String],
    ) -> Result<(), ForgeError> {
        if reviewers.is_empty() {
            return Ok(());
        }
        let auth = self.auth().await?;
        self.forge
            .request_reviews(self.call(&auth), number, reviewers)
            .await
    }

    /// Marks a draft ready for review: GitHub's `markPullRequestReadyForReview` (GraphQL
    /// only), or the draft mark taken off the title (GitLab's `Draft:`, Gitea's `WIP:`).
    pub async fn mark_ready(&self, request: &Request) -> Result<(), ForgeError> {
        let auth = self.auth().await?;
        self.forge.mark_ready(self.call(&auth), request).await
    }

    /// Opens a request, with its labels and assignees (and on GitLab its reviewers; elsewhere
    /// see [`Client::request_reviews`]); when the forge says one is open already (another
    /// replica, a lost answer), that one is returned, with `true` (adopted, not opened).
    pub async fn open(&self, proposal: &Proposal<'_>) -> Result<(Request, bool), ForgeError> {
        let auth = self.auth().await?;
        let proposal = Proposal {
            title: cut(&proposal.title, MAX_TITLE),
            body: cut(&proposal.body, MAX_BODY_TEXT),
            ..proposal.clone()
        };
        let opened = self.forge.open(self.call(&auth), &proposal).await?;
        if let Some(request) = opened {
            return Ok((request, false));
        }
        // Opened by someone else since we looked: adopted, and given this proposal's text.
        let found = self
            .find_open(proposal.head, proposal.base)
            .await?
            .ok_or_else(|| ForgeError::Invalid {
                what: format!("opening a {}", self.noun()),
                reason: "the forge says one exists, but lists none".into(),
            })?;
        self.edit(found.number, &proposal.title, &proposal.body)
            .await?;
        Ok((found, true))
    }

    /// Sets the title and body of an open request.
    pub async fn edit(&self, number: u64, title: &str, body: &str) -> Result<(), ForgeError> {
        let auth = self.auth().await?;
        let (title, body) = (cut(title, MAX_TITLE), cut(body, MAX_BODY_TEXT));
        self.forge
            .edit(self.call(&auth), number, &title, &body)
            .await
    }

    /// Comments on a request, then closes it.
    pub async fn close(&self, number: u64, comment: &str) -> Result<(), ForgeError> {
        let auth = self.auth().await?;
        let comment = cut(comment, MAX_BODY_TEXT);
        self.forge.close(self.call(&auth), number, &comment).await
    }

    /// Merges `request` at exactly `head`, or has the forge merge it once its rules are met;
    /// never past them.
    pub async fn merge(
        &self,
        request: &Request,
        head: &str,
        settings: &PullRequest,
    ) -> Result<Merge, ForgeError> {
        let auth = self.auth().await?;
        self.forge
            .merge(self.call(&auth), request, head, settings)
            .await
    }

    fn call<'a>(&'a self, auth: &'a Auth) -> Call<'a> {
        Call {
            api: &self.api,
            auth,
            project: &self.project,
        }
    }

    /// The header that carries `token`, as this forge wants it.
    fn header(&self, token: &str) -> Result<Auth, ForgeError> {
        let (name, value) = self.forge.authorization(token);
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| ForgeError::Credentials("the token is not a valid header value".into()))?;
        value.set_sensitive(true);
        Ok(Auth { name, value })
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    text[..end].to_string()
}

/// A request on a forge that marks drafts in its title (GitLab's `Draft:`, Gitea's `WIP:`):
/// where it lives, the method that edits it, its name in messages, and the mark. Edits of the
/// title read it first, so that they keep the mark or take it off as asked. GitLab and Gitea
/// differ only in the path, the method and the description's field.
struct TitledDraft<'a> {
    api: &'a http::Api,
    auth: &'a Auth,
    path: String,
    method: reqwest::Method,
    name: String,
    marker: &'static str,
}

impl TitledDraft<'_> {
    /// The request's title, read from the forge.
    async fn title(&self) -> Result<String, ForgeError> {
        let what = format!("reading {}", self.name);
        let current = self
            .api
            .call(reqwest::Method::GET, &self.path, self.auth, None, &what)
            .await?;
        let value: serde_json::Value = current.json(&what)?;
        Ok(value["title"].as_str().unwrap_or_default().to_string())
    }

    /// Sends `body` with the request's edit method; any 2xx is success (Gitea answers an
    /// edit with 201).
    async fn send(&self, body: serde_json::Value, what: &str) -> Result<(), ForgeError> {
        self.api
            .call(
                self.method.clone(),
                &self.path,
                self.auth,
                Some(&body),
                what,
            )
            .await
            .map(drop)
    }

    /// Sets the title and the description (`body_field`), keeping the draft mark the
    /// request has.
    async fn edit(&self, title: &str, (body_field, body): (&str, &str)) -> Result<(), ForgeError> {
        let draft = self.title().await?.starts_with(self.marker);
        let mut fields = serde_json::Map::new();
        fields.insert("title".into(), titled(self.marker, title, draft).into());
        fields.insert(body_field.into(), body.into());
        self.send(fields.into(), &format!("updating {}", self.name))
            .await
    }

    /// Takes the draft mark off the title, when it has one.
    async fn mark_ready(&self) -> Result<(), ForgeError> {
        let title = self.title().await?;
        let Some(plain) = title.strip_prefix(self.marker) else {
            return Ok(());
        };
        let body = serde_json::json!({ "title": plain.trim_start() });
        self.send(body, &format!("marking {} ready", self.name))
            .await
    }
}

/// `title`, with the draft `marker` in front when `draft`: how GitLab and Gitea mark drafts.
fn titled(marker: &str, title: &str, draft: bool) -> String {
    if draft {
        format!("{marker} {title}")
    } else {
        title.to_string()
    }
}

/// A url from a forge's answer: http(s) and not absurdly long, or nothing.
fn checked_url(url: Option<String>) -> Option<String> {
    url.filter(|u| {
        (u.starts_with("https://") || u.starts_with("http://"))
            && u.len() <= 2048
            && !u.chars().any(char::is_control)
    })
}

/// A commit id from a forge's answer: 40 (or 64) hex digits, or nothing.
fn checked_sha(sha: Option<String>) -> Option<String> {
    sha.filter(|s| matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_cut_on_character_boundaries() {
        assert_eq!(cut("déjà", 2), "d");
        assert_eq!(cut("abc", 10), "abc");
    }

    #[test]
    fn answers_are_checked() {
        assert_eq!(checked_url(Some("javascript:alert(1)".into())), None);
        assert!(checked_url(Some("https://github.com/a/b/pull/1".into())).is_some());
        assert_eq!(checked_sha(Some("zz".into())), None);
        assert!(checked_sha(Some("a".repeat(40))).is_some());
    }
}
