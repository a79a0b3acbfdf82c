//! Forge APIs written for the tests: GitHub's REST API (2022-11-28), GitLab's REST API v4 and
//! Gitea's (and Forgejo's) API v1, for the endpoints image-updater uses, as their published
//! references describe them: paths, query parameters, request and response fields, status
//! codes (201 on create, 422 / 409 for an existing request, 405 / 409 on merges the rules
//! refuse), `Link` pagination and each forge's auth header.
//!
//! No forge can run on these machines, so this stands in for the API. The branches are real:
//! requests point at branches of a repository on the real git server, and a merge (by the
//! forge, or by a "person" in a test) is made with `git merge-tree` and `git commit-tree` in
//! that bare repository, so what the daemon fetches afterwards is what a forge would leave.
//! Every request is recorded, so a test asserts everything the daemon sent.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    GitHub,
    GitLab,
    Gitea,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::GitHub => "github",
            Kind::GitLab => "gitlab",
            Kind::Gitea => "gitea",
        }
    }

    /// The published description that judges a request to `path`, and the path as that
    /// description writes it (without the API's base path); `None` for what no REST
    /// description covers (GitHub's GraphQL endpoint).
    fn described(self, path: &str) -> Option<(&'static Value, &str)> {
        match self {
            Kind::GitHub if path == "/graphql" => None,
            Kind::GitHub => Some((super::openapi::github(), path)),
            Kind::GitLab => Some((super::openapi::gitlab(), path.strip_prefix("/api/v4")?)),
            Kind::Gitea => Some((super::openapi::gitea(), path.strip_prefix("/api/v1")?)),
        }
    }
}

pub const OWNER: &str = "acme";
pub const REPO: &str = "manifests";
pub const TOKEN: &str = "forge-t0ken";

/// One request as the forge received it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
    pub auth: Option<String>,
    /// The status code answered.
    pub status: u16,
}

impl Logged {
    /// `METHOD path` without the API prefix and project, for asserting sequences:
    /// `GET pulls`, `POST pulls/1/merge`, `GET users`.
    pub fn op(&self) -> String {
        let path = self
            .path
            .trim_start_matches("/api/v4")
            .trim_start_matches("/api/v1");
        let prefixes = [
            format!("/repos/{OWNER}/{REPO}/"),
            format!("/projects/{OWNER}%2F{REPO}/"),
            "/".to_string(),
        ];
        let short = prefixes
            .iter()
            .find_map(|p| path.strip_prefix(p.as_str()))
            .unwrap_or(path);
        format!("{} {short}", self.method)
    }
}

#[derive(Debug, Clone)]
pub struct Pull {
    pub number: u64,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    /// `open` or `closed`.
    pub state: String,
    pub merged: bool,
    pub labels: Vec<Value>,
    pub assignees: Vec<Value>,
    pub reviewers: Vec<Value>,
    pub comments: Vec<String>,
    /// Set to merge when checks pass (GitLab's auto_merge, Gitea's merge_when_checks_succeed).
    pub auto_merge: bool,
    /// GitHub's `draft` field (GitLab and Gitea mark drafts in the title).
    pub draft: bool,
}

impl Pull {
    /// Merged into its base in the bare repository, as a forge's merge button does.
    fn merge(&mut self, dir: &PathBuf) {
        merge_in_git(dir, &self.head, &self.base);
        self.state = "closed".into();
        self.merged = true;
    }
}

/// The GitHub App the forge knows: its id, its public key (PEM) and its installation.
pub const APP_ID: u64 = 777;
pub const INSTALLATION: u64 = 42;

#[derive(Default)]
struct State {
    /// A GitHub App's public key: app endpoints take a JWT it verifies.
    app_key: Option<Vec<u8>>,
    pulls: Vec<Pull>,
    log: Vec<Logged>,
    /// Answers 503 to everything.
    down: bool,
    /// Whether the required checks of every request have passed.
    checks_pass: bool,
    /// Lists of requests that answer as if none were open, as a list read just before
    /// another client opened one does.
    stale_lists: usize,
    /// The request those lists do not show.
    unseen: Option<u64>,
    /// A request a person merges right after the next read of it is answered: the merge
    /// lands between the bot's read and its update.
    merge_after_read: Option<u64>,
    /// The next request is answered 429 with this `Retry-After` (seconds).
    rate_limit_next: Option<u64>,
    /// GitLab's version (`GET /version`); `None`: a current one.
    gitlab_version: Option<String>,
    /// Requests judged by the forge's published description, and what it does not allow.
    described: usize,
    violations: Vec<String>,
    /// Review requests for this user are refused (422), as for a user without access.
    refused_reviewer: Option<String>,
}

impl State {
    /// Whether a list answered now shows request `number` (see [`FakeForge::open_unseen`]).
    fn listed(&self, number: u64) -> bool {
        self.stale_lists == 0 || self.unseen != Some(number)
    }

    /// Called once per list answered.
    fn listed_once(&mut self) {
        self.stale_lists = self.stale_lists.saturating_sub(1);
    }
}

pub struct FakeForge {
    pub kind: Kind,
    pub port: u16,
    /// The bare repository on the git server that the requests' branches live in.
    pub git_dir: PathBuf,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeForge {
    pub async fn start(kind: Kind, git_dir: PathBuf) -> FakeForge {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let (s, dir) = (state.clone(), git_dir.clone());
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (s, dir) = (s.clone(), dir.clone());
                async move {
                    if let Some((doc, path)) = kind.described(uri.path()) {
                        let logged: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let why = super::openapi::violation(
                            doc,
                            method.as_str(),
                            path,
                            &query_pairs(&uri),
                            &logged,
                        );
                        let mut state = s.lock().unwrap();
                        state.described += 1;
                        state.violations.extend(why);
                    }
                    let index = record(kind, &s, &method, &uri, &headers, &body);
                    let response = handle(kind, port, &s, &dir, method, uri, headers, body);
                    let mut state = s.lock().unwrap();
                    state.log[index].status = response.status().as_u16();
                    let read = state.log[index].op();
                    if let Some(n) = state.merge_after_read
                        && (read == format!("GET pulls/{n}")
                            || read == format!("GET merge_requests/{n}"))
                    {
                        state.merge_after_read = None;
                        let pull = state.pulls.iter_mut().find(|p| p.number == n).unwrap();
                        pull.merge(&dir);
                    }
                    drop(state);
                    response
                }
            },
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeForge {
            kind,
            port,
            git_dir,
            state,
            task,
        }
    }

    /// What the config's `api_url` is.
    pub fn api_url(&self) -> String {
        match self.kind {
            Kind::GitHub => format!("http://127.0.0.1:{}", self.port),
            Kind::GitLab => format!("http://127.0.0.1:{}/api/v4", self.port),
            Kind::Gitea => format!("http://127.0.0.1:{}/api/v1", self.port),
        }
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// The operations received since request number `from`.
    pub fn ops_since(&self, from: usize) -> Vec<String> {
        self.log()[from..].iter().map(Logged::op).collect()
    }

    pub fn pulls(&self) -> Vec<Pull> {
        self.state.lock().unwrap().pulls.clone()
    }

    pub fn pull(&self, number: u64) -> Pull {
        self.pulls()
            .into_iter()
            .find(|p| p.number == number)
            .unwrap()
    }

    /// Accepts JWTs of the app [`APP_ID`] signed by the private key of `public_pem`.
    pub fn trust_app(&self, public_pem: &[u8]) {
        self.state.lock().unwrap().app_key = Some(public_pem.to_vec());
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// Adds a request from other branches (pagination fodder).
    pub fn add_other(&self, head: &str, base: &str) {
        let mut s = self.state.lock().unwrap();
        let number = s.pulls.len() as u64 + 1;
        s.pulls
            .push(new_pull(number, head, base, "someone else's change", ""));
    }

    /// Someone else (another replica, a person) opens a request from `head` into `base`,
    /// which the next `lists` list calls do not show yet.
    pub fn open_unseen(&self, head: &str, base: &str, lists: usize) -> u64 {
        let mut s = self.state.lock().unwrap();
        let number = s.pulls.len() as u64 + 1;
        s.pulls.push(new_pull(
            number,
            head,
            base,
            "opened elsewhere",
            "stale text",
        ));
        s.stale_lists = lists;
        s.unseen = Some(number);
        number
    }

    /// A person merges request `number` in the forge's web page.
    pub fn merge_by_person(&self, number: u64) {
        let mut s = self.state.lock().unwrap();
        let pull = s.pulls.iter_mut().find(|p| p.number == number).unwrap();
        pull.merge(&self.git_dir);
    }

    /// A person merges request `number` right after the bot's next read of it is answered.
    pub fn merge_after_next_read(&self, number: u64) {
        self.state.lock().unwrap().merge_after_read = Some(number);
    }

    /// Review requests naming `user` are refused from now on (`None`: accepted again).
    pub fn refuse_reviewer(&self, user: Option<&str>) {
        self.state.lock().unwrap().refused_reviewer = user.map(str::to_string);
    }

    /// GitLab's version, as `GET /version` answers it.
    pub fn set_gitlab_version(&self, version: &str) {
        self.state.lock().unwrap().gitlab_version = Some(version.to_string());
    }

    /// The next request is answered 429 with `Retry-After: seconds`.
    pub fn rate_limit_next(&self, seconds: u64) {
        self.state.lock().unwrap().rate_limit_next = Some(seconds);
    }

    /// An admin deletes request `number`: the forge answers 404 for it from now on.
    pub fn delete(&self, number: u64) {
        let mut s = self.state.lock().unwrap();
        // Kept in the list under a number nobody asks for, so new requests are numbered on.
        let pull = s.pulls.iter_mut().find(|p| p.number == number).unwrap();
        pull.number = u64::MAX - number;
        pull.state = "closed".into();
    }

    /// A person closes request `number` without merging.
    pub fn close_by_person(&self, number: u64) {
        let mut s = self.state.lock().unwrap();
        let pull = s.pulls.iter_mut().find(|p| p.number == number).unwrap();
        pull.state = "closed".into();
    }

    /// A person reopens request `number`, which was closed without merging.
    pub fn reopen_by_person(&self, number: u64) {
        let mut s = self.state.lock().unwrap();
        let pull = s.pulls.iter_mut().find(|p| p.number == number).unwrap();
        assert!(!pull.merged);
        pull.state = "open".into();
    }

    /// The required checks pass: requests set to auto-merge are merged.
    pub fn checks_pass(&self) {
        let mut s = self.state.lock().unwrap();
        s.checks_pass = true;
        for pull in s
            .pulls
            .iter_mut()
            .filter(|p| p.auto_merge && p.state == "open")
        {
            pull.merge(&self.git_dir);
        }
    }
}

impl Drop for FakeForge {
    /// A request the forge's published description does not allow fails the test that sent
    /// it; how many were judged is added to `described-requests.log` in the target's test
    /// directory, for the record.
    fn drop(&mut self) {
        self.task.abort();
        let (described, violations) = {
            let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (s.described, s.violations.clone())
        };
        if described > 0 {
            use std::io::Write as _;
            let log =
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("described-requests.log");
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
            {
                let _ = writeln!(f, "{} {described} {}", self.kind.name(), violations.len());
            }
        }
        if !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "{} requests the published {} description does not allow:\n{}",
                violations.len(),
                self.kind.name(),
                violations.join("\n")
            );
        }
    }
}

fn new_pull(number: u64, head: &str, base: &str, title: &str, body: &str) -> Pull {
    Pull {
        number,
        head: head.into(),
        base: base.into(),
        title: title.into(),
        body: body.into(),
        state: "open".into(),
        merged: false,
        labels: Vec::new(),
        assignees: Vec::new(),
        reviewers: Vec::new(),
        comments: Vec::new(),
        auto_merge: false,
        draft: false,
    }
}

fn rev(dir: &PathBuf, branch: &str) -> Option<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
}

/// Merges `head` into `base` in the bare repository, as a forge's merge button does.
fn merge_in_git(dir: &PathBuf, head: &str, base: &str) {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(dir)
            .args([
                "-c",
                "user.name=Forge",
                "-c",
                "user.email=forge@example.com",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (h, b) = (rev(dir, head).unwrap(), rev(dir, base).unwrap());
    let tree = git(&["merge-tree", "--write-tree", &b, &h]);
    let commit = git(&[
        "commit-tree",
        &tree,
        "-p",
        &b,
        "-p",
        &h,
        "-m",
        &format!("Merge {head} into {base}"),
    ]);
    git(&["update-ref", &format!("refs/heads/{base}"), &commit, &b]);
}

fn answer(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `application/x-www-form-urlencoded` pairs of the query, decoded.
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let query = uri.query().unwrap_or_default();
    reqwest::Url::parse(&format!("http://forge/?{query}"))
        .map(|url| url.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn auth_of(kind: Kind, headers: &HeaderMap) -> Option<String> {
    let name = match kind {
        Kind::GitLab => "private-token",
        _ => "authorization",
    };
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// Logs a request as it arrives; returns its place in the log.
fn record(
    kind: Kind,
    state: &Mutex<State>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> usize {
    let mut s = state.lock().unwrap();
    s.log.push(Logged {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        auth: auth_of(kind, headers),
        status: 0,
    });
    s.log.len() - 1
}

#[allow(clippy::too_many_arguments)]
fn handle(
    kind: Kind,
    port: u16,
    state: &Mutex<State>,
    dir: &PathBuf,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = auth_of(kind, &headers);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = state.lock().unwrap();
    if s.down {
        return answer(503, json!({"message": "Service Unavailable"}));
    }
    if let Some(seconds) = s.rate_limit_next.take() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("content-type", "application/json".to_string()),
                ("retry-after", seconds.to_string()),
            ],
            json!({"message": "API rate limit exceeded"}).to_string(),
        )
            .into_response();
    }
    let expected = match kind {
        Kind::GitHub => format!("Bearer {TOKEN}"),
        Kind::GitLab => TOKEN.to_string(),
        Kind::Gitea => format!("token {TOKEN}"),
    };
    // GitHub App endpoints: a JWT of the app, RS256, issued by APP_ID and not expired.
    let app_path = uri.path().starts_with("/app/")
        || uri.path() == format!("/repos/{OWNER}/{REPO}/installation");
    if kind == Kind::GitHub && app_path {
        let Some(key) = s.app_key.clone() else {
            return not_found();
        };
        let jwt = auth
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_default();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&[APP_ID.to_string()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        let decoded = jsonwebtoken::decode::<Value>(
            jwt,
            &jsonwebtoken::DecodingKey::from_rsa_pem(&key).unwrap(),
            &validation,
        );
        if decoded.is_err() {
            return answer(
                401,
                json!({"message": "A JSON web token could not be decoded"}),
            );
        }
        return match (method.as_str(), uri.path()) {
            ("GET", p) if p.ends_with("/installation") => {
                answer(200, json!({"id": INSTALLATION, "app_id": APP_ID}))
            }
            ("POST", p) if p == format!("/app/installations/{INSTALLATION}/access_tokens") => {
                let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
                answer(
                    201,
                    json!({"token": TOKEN, "expires_at": expires.to_string(), "permissions": {"pull_requests": "write", "contents": "write"}}),
                )
            }
            _ => not_found(),
        };
    }
    if auth.as_deref() != Some(expected.as_str()) {
        let message = match kind {
            Kind::GitHub => {
                json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
            }
            Kind::GitLab => json!({"message": "401 Unauthorized"}),
            Kind::Gitea => json!({"message": "token is required"}),
        };
        return answer(401, message);
    }
    let query = query_pairs(&uri);
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    serve(kind, port, &mut s, dir, &method, uri.path(), &q, &body)
}

fn not_found() -> Response {
    answer(404, json!({"message": "Not Found"}))
}

// ---- Routes: every endpoint of every forge, one row each ----

/// What a route does; the same operation on every forge that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    List,
    /// Gitea's lookup of the latest request from `{head}` into `{base}`.
    Lookup,
    Open,
    Get,
    Edit,
    Comment,
    Labels,
    Assignees,
    Reviewers,
    Merge,
    /// GitHub's GraphQL mutation that marks a draft ready (the one REST lacks).
    MarkReady,
    /// GitLab's `GET /version`.
    Version,
    /// GitLab's user lookup by name.
    Users,
    /// Gitea's repository labels.
    RepoLabels,
}

/// `(forge, method, path, operation)`: the path after the API's base, `{p}` standing for the
/// project's own prefix, `{n}` for a request number, `{base}` and `{head}` for branches.
const ROUTES: &[(Kind, &str, &str, Op)] = &[
    (Kind::GitHub, "POST", "/graphql", Op::MarkReady),
    (Kind::GitHub, "GET", "{p}/pulls", Op::List),
    (Kind::GitHub, "POST", "{p}/pulls", Op::Open),
    (Kind::GitHub, "GET", "{p}/pulls/{n}", Op::Get),
    (Kind::GitHub, "PATCH", "{p}/pulls/{n}", Op::Edit),
    (Kind::GitHub, "POST", "{p}/issues/{n}/comments", Op::Comment),
    (Kind::GitHub, "POST", "{p}/issues/{n}/labels", Op::Labels),
    (
        Kind::GitHub,
        "POST",
        "{p}/issues/{n}/assignees",
        Op::Assignees,
    ),
    (
        Kind::GitHub,
        "POST",
        "{p}/pulls/{n}/requested_reviewers",
        Op::Reviewers,
    ),
    (Kind::GitHub, "PUT", "{p}/pulls/{n}/merge", Op::Merge),
    (Kind::GitLab, "GET", "/version", Op::Version),
    (Kind::GitLab, "GET", "/users", Op::Users),
    (Kind::GitLab, "GET", "{p}/merge_requests", Op::List),
    (Kind::GitLab, "POST", "{p}/merge_requests", Op::Open),
    (Kind::GitLab, "GET", "{p}/merge_requests/{n}", Op::Get),
    (Kind::GitLab, "PUT", "{p}/merge_requests/{n}", Op::Edit),
    (
        Kind::GitLab,
        "POST",
        "{p}/merge_requests/{n}/notes",
        Op::Comment,
    ),
    (
        Kind::GitLab,
        "PUT",
        "{p}/merge_requests/{n}/merge",
        Op::Merge,
    ),
    (Kind::Gitea, "GET", "{p}/labels", Op::RepoLabels),
    (Kind::Gitea, "GET", "{p}/pulls", Op::List),
    (Kind::Gitea, "POST", "{p}/pulls", Op::Open),
    (Kind::Gitea, "GET", "{p}/pulls/{n}", Op::Get),
    (Kind::Gitea, "GET", "{p}/pulls/{base}/{head}", Op::Lookup),
    (Kind::Gitea, "PATCH", "{p}/pulls/{n}", Op::Edit),
    (Kind::Gitea, "POST", "{p}/issues/{n}/comments", Op::Comment),
    (
        Kind::Gitea,
        "POST",
        "{p}/pulls/{n}/requested_reviewers",
        Op::Reviewers,
    ),
    (Kind::Gitea, "POST", "{p}/pulls/{n}/merge", Op::Merge),
];

impl Kind {
    /// The API's base path, before every route.
    fn api_base(self) -> &'static str {
        match self {
            Kind::GitHub => "",
            Kind::GitLab => "/api/v4",
            Kind::Gitea => "/api/v1",
        }
    }

    /// The project's prefix in paths (`{p}` in [`ROUTES`]).
    fn project(self) -> String {
        match self {
            Kind::GitHub | Kind::Gitea => format!("/repos/{OWNER}/{REPO}"),
            Kind::GitLab => format!("/projects/{OWNER}%2F{REPO}"),
        }
    }

    /// The request as this forge writes it in JSON.
    fn json(self, port: u16, p: &Pull, dir: &PathBuf, checks_pass: bool) -> Value {
        match self {
            Kind::GitHub => github_json(port, p, dir, checks_pass),
            Kind::GitLab => gitlab_json(p, dir),
            Kind::Gitea => gitea_json(p, dir),
        }
    }

    /// The body fields naming a new request's head and base branches, and its description.
    fn fields(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::GitLab => ("source_branch", "target_branch", "description"),
            Kind::GitHub | Kind::Gitea => ("head", "base", "body"),
        }
    }
}

/// What a matched route names in the path.
#[derive(Default)]
struct Captured {
    number: Option<u64>,
    base: String,
    head: String,
}

/// The route of `method path` on `kind`, and what its path names.
fn route(kind: Kind, method: &Method, path: &str) -> Option<(Op, Captured)> {
    let path = path.strip_prefix(kind.api_base())?;
    let project = kind.project();
    ROUTES
        .iter()
        .filter(|(k, m, ..)| *k == kind && *m == method.as_str())
        .find_map(|(_, _, pattern, op)| {
            let pattern = pattern.replace("{p}", &project);
            let (want, got): (Vec<&str>, Vec<&str>) =
                (pattern.split('/').collect(), path.split('/').collect());
            if want.len() != got.len() {
                return None;
            }
            let mut captured = Captured::default();
            for (w, g) in want.iter().zip(&got) {
                match *w {
                    "{n}" => captured.number = Some(g.parse().ok()?),
                    // A branch is not a number: `pulls/1/merge` is no lookup.
                    "{base}" if g.parse::<u64>().is_err() => captured.base = decode_branch(g),
                    "{head}" => captured.head = decode_branch(g),
                    w if w == *g => {}
                    _ => return None,
                }
            }
            Some((*op, captured))
        })
}

fn decode_branch(text: &str) -> String {
    text.replace("%2F", "/").replace("%2f", "/")
}

/// One request of the daemon's, after auth: routed, and answered from the state.
#[allow(clippy::too_many_arguments)]
fn serve(
    kind: Kind,
    port: u16,
    s: &mut State,
    dir: &PathBuf,
    method: &Method,
    path: &str,
    q: &dyn Fn(&str) -> Option<String>,
    body: &Value,
) -> Response {
    let Some((op, at)) = route(kind, method, path) else {
        return not_found();
    };
    let checks = s.checks_pass;
    let json = |p: &Pull| kind.json(port, p, dir, checks);
    match op {
        Op::List => list(kind, port, s, dir, path, q),
        Op::Open => open(kind, s, dir, body, json),
        Op::Lookup => match s
            .pulls
            .iter()
            .rev()
            .find(|p| p.head == at.head && p.base == at.base)
        {
            Some(p) => answer(200, json(p)),
            None => answer(404, json!({"message": "pull request does not exist"})),
        },
        Op::MarkReady => mark_ready(s, body),
        Op::Version => {
            let version = s.gitlab_version.clone();
            let version = version.unwrap_or_else(|| "18.6.1-ee".into());
            answer(200, json!({"version": version, "revision": "0123abcd"}))
        }
        Op::Users => {
            let name = q("username").unwrap_or_default();
            let users: Vec<Value> = USERS
                .iter()
                .filter(|(_, u)| *u == name)
                .map(|(id, u)| json!({"id": id, "username": u, "name": u, "state": "active"}))
                .collect();
            answer(200, Value::Array(users))
        }
        Op::RepoLabels => answer(
            200,
            Value::Array(
                LABELS
                    .iter()
                    .map(|(id, n)| json!({"id": id, "name": n, "color": "00aabb"}))
                    .collect(),
            ),
        ),
        Op::Get
        | Op::Edit
        | Op::Comment
        | Op::Labels
        | Op::Assignees
        | Op::Reviewers
        | Op::Merge => {
            let number = at.number.expect("the route names a number");
            let refused = s.refused_reviewer.clone();
            let version = s.gitlab_version.clone().unwrap_or_default();
            let Some(p) = s.pulls.iter_mut().find(|p| p.number == number) else {
                return match kind {
                    Kind::GitLab => answer(404, json!({"message": "404 Not found"})),
                    _ => not_found(),
                };
            };
            on_request(
                kind,
                op,
                p,
                dir,
                body,
                refused.as_deref(),
                &version,
                checks,
                port,
            )
        }
    }
}

/// The operations on one request.
#[allow(clippy::too_many_arguments)]
fn on_request(
    kind: Kind,
    op: Op,
    p: &mut Pull,
    dir: &PathBuf,
    body: &Value,
    refused: Option<&str>,
    gitlab_version: &str,
    checks: bool,
    port: u16,
) -> Response {
    let (_, _, text) = kind.fields();
    match op {
        Op::Get => answer(200, kind.json(port, p, dir, checks)),
        Op::Edit => {
            if let Some(t) = body["title"].as_str() {
                p.title = t.into();
            }
            if let Some(b) = body[text].as_str() {
                p.body = b.into();
            }
            if let Some(st) = body["state"].as_str() {
                p.state = st.into();
            }
            if body["state_event"] == "close" {
                p.state = "closed".into();
            }
            // Gitea answers an edit 201.
            let status = if kind == Kind::Gitea { 201 } else { 200 };
            answer(status, kind.json(port, p, dir, checks))
        }
        Op::Comment => {
            p.comments
                .push(body["body"].as_str().unwrap_or_default().into());
            let mut note = json!({"id": 1, "body": body["body"]});
            if kind == Kind::GitLab {
                note["noteable_type"] = json!("MergeRequest");
            }
            answer(201, note)
        }
        Op::Labels => {
            p.labels
                .extend(body["labels"].as_array().cloned().unwrap_or_default());
            answer(
                200,
                Value::Array(p.labels.iter().map(|l| json!({"name": l})).collect()),
            )
        }
        Op::Assignees => {
            p.assignees
                .extend(body["assignees"].as_array().cloned().unwrap_or_default());
            answer(201, kind.json(port, p, dir, checks))
        }
        Op::Reviewers => {
            let asked = body["reviewers"].as_array().cloned().unwrap_or_default();
            if let Some(who) = refused
                && asked.iter().any(|r| r == who)
            {
                let message = match kind {
                    Kind::GitHub => {
                        "Reviews may only be requested from collaborators. One or more of the users or teams you specified is not a collaborator of the acme/manifests repository."
                    }
                    _ => "reviewer is not a collaborator",
                };
                return answer(422, json!({"message": message}));
            }
            p.reviewers.extend(asked);
            match kind {
                Kind::Gitea => answer(201, json!([])),
                _ => answer(201, kind.json(port, p, dir, checks)),
            }
        }
        Op::Merge => merge(kind, p, dir, body, gitlab_version, checks),
        _ => not_found(),
    }
}

/// A list of requests, filtered and paged as each forge does.
fn list(
    kind: Kind,
    port: u16,
    s: &mut State,
    dir: &PathBuf,
    path: &str,
    q: &dyn Fn(&str) -> Option<String>,
) -> Response {
    let checks = s.checks_pass;
    // GitLab lists every state unless asked; GitHub and Gitea the open ones.
    let default_state = if kind == Kind::GitLab { "all" } else { "open" };
    let state = q("state").unwrap_or_else(|| default_state.into());
    // The query parameters each forge filters by, and the field each compares.
    let filters: &[(&str, &str)] = match kind {
        Kind::GitHub => &[("head", "/head/label"), ("base", "/base/ref")],
        Kind::GitLab => &[
            ("source_branch", "/source_branch"),
            ("target_branch", "/target_branch"),
        ],
        Kind::Gitea => &[],
    };
    let items: Vec<Value> = s
        .pulls
        .iter()
        .filter(|p| s.listed(p.number))
        .map(|p| kind.json(port, p, dir, checks))
        // Each forge's own words for the state: GitLab's `opened` and `merged`.
        .filter(|j| state == "all" || j["state"] == state.as_str())
        .filter(|j| {
            filters
                .iter()
                .all(|(name, at)| q(name).is_none_or(|v| j.pointer(at) == Some(&json!(v))))
        })
        .collect();
    s.listed_once();
    let total = items.len();
    let page_of = |size: &str, default: usize, most: usize| {
        let size: usize = q(size)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
            .min(most);
        let n: usize = q("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
        (size, n)
    };
    match kind {
        Kind::GitHub => {
            let (per_page, n) = page_of("per_page", 30, 100);
            let base_q = format!(
                "http://127.0.0.1:{port}{path}?state={state}&per_page={per_page}{}{}",
                q("head").map(|h| format!("&head={h}")).unwrap_or_default(),
                q("base").map(|b| format!("&base={b}")).unwrap_or_default(),
            );
            page(items, n, per_page, |next| format!("{base_q}&page={next}"))
        }
        Kind::GitLab => {
            let mut r = answer(200, Value::Array(items));
            r.headers_mut()
                .insert("x-total", total.to_string().parse().unwrap());
            r
        }
        Kind::Gitea => {
            let (limit, n) = page_of("limit", 30, 50);
            let mut r = page(items, n, limit, |next| {
                format!("http://127.0.0.1:{port}{path}?state={state}&limit={limit}&page={next}")
            });
            r.headers_mut()
                .insert("x-total-count", total.to_string().parse().unwrap());
            r
        }
    }
}

/// Opens a request, or refuses one that exists (or whose head branch does not).
fn open(
    kind: Kind,
    s: &mut State,
    dir: &PathBuf,
    body: &Value,
    json: impl Fn(&Pull) -> Value,
) -> Response {
    let (head_field, base_field, text) = kind.fields();
    let (head, base) = (
        body[head_field].as_str().unwrap_or_default(),
        body[base_field].as_str().unwrap_or_default(),
    );
    if kind == Kind::GitHub && rev(dir, head).is_none() {
        return answer(
            422,
            json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}]}),
        );
    }
    if let Some(p) = s
        .pulls
        .iter()
        .find(|p| p.state == "open" && p.head == head && p.base == base)
    {
        return match kind {
            Kind::GitHub => answer(
                422,
                json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {OWNER}:{head}.")}], "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"}),
            ),
            Kind::GitLab => answer(
                409,
                json!({"message": [format!("Another open merge request already exists for this source branch: !{}", p.number)]}),
            ),
            Kind::Gitea => answer(
                409,
                json!({"message": "pull request already exists for these targets", "url": ""}),
            ),
        };
    }
    let number = s.pulls.len() as u64 + 1;
    let mut p = new_pull(
        number,
        head,
        base,
        body["title"].as_str().unwrap_or_default(),
        body[text].as_str().unwrap_or_default(),
    );
    match kind {
        Kind::GitHub => p.draft = body["draft"].as_bool().unwrap_or(false),
        Kind::GitLab => {
            if let Some(l) = body["labels"].as_str() {
                p.labels = l.split(',').map(|l| json!(l)).collect();
            }
            p.assignees = body["assignee_ids"].as_array().cloned().unwrap_or_default();
            p.reviewers = body["reviewer_ids"].as_array().cloned().unwrap_or_default();
        }
        Kind::Gitea => {
            p.labels = body["labels"].as_array().cloned().unwrap_or_default();
            p.assignees = body["assignees"].as_array().cloned().unwrap_or_default();
        }
    }
    let out = json(&p);
    s.pulls.push(p);
    answer(201, out)
}

/// A merge, under each forge's rules: the head the bot names must be the head, and the checks
/// must pass or the request is set to merge when they do.
fn merge(
    kind: Kind,
    p: &mut Pull,
    dir: &PathBuf,
    body: &Value,
    gitlab_version: &str,
    checks: bool,
) -> Response {
    let sha_field = match kind {
        Kind::Gitea => "head_commit_id",
        _ => "sha",
    };
    let closed = match kind {
        Kind::GitHub => "Pull Request is not mergeable",
        Kind::GitLab => "405 Method Not Allowed",
        Kind::Gitea => "The PR is closed",
    };
    if p.state != "open" || (kind == Kind::GitHub && !checks) {
        return answer(405, json!({"message": closed}));
    }
    if body[sha_field].as_str() != rev(dir, &p.head).as_deref() {
        let message = match kind {
            Kind::GitHub => "Head branch was modified. Review and try the merge again.",
            Kind::GitLab => "SHA does not match HEAD of source branch",
            Kind::Gitea => "head out of date",
        };
        return answer(409, json!({"message": message}));
    }
    match kind {
        Kind::GitHub => {
            p.merge(dir);
            answer(
                200,
                json!({"sha": rev(dir, &p.base), "merged": true, "message": "Pull Request successfully merged"}),
            )
        }
        Kind::GitLab => {
            // Before 17.11 GitLab knows `merge_when_pipeline_succeeds`, not `auto_merge`:
            // given only the latter, it merges at once where pipelines are not required, as
            // this project's are not.
            let old = gitlab_before(gitlab_version, 17, 11);
            let wait = body["merge_when_pipeline_succeeds"] == true
                || (!old && body["auto_merge"] == true);
            if checks || (old && !wait) {
                p.merge(dir);
            } else if wait {
                p.auto_merge = true;
            } else {
                return answer(405, json!({"message": closed}));
            }
            answer(200, gitlab_json(p, dir))
        }
        Kind::Gitea => {
            if checks {
                p.merge(dir);
                answer(200, Value::Null)
            } else if body["merge_when_checks_succeed"] == true {
                p.auto_merge = true;
                answer(201, Value::Null)
            } else {
                answer(405, json!({"message": "Please try again later"}))
            }
        }
    }
}

/// GitHub's GraphQL mutation marking a draft ready for review.
fn mark_ready(s: &mut State, body: &Value) -> Response {
    let query = body["query"].as_str().unwrap_or_default();
    let id = body["variables"]["id"].as_str().unwrap_or_default();
    if !query.contains("markPullRequestReadyForReview") {
        return answer(200, json!({"errors": [{"message": "unexpected query"}]}));
    }
    let Some(p) = s
        .pulls
        .iter_mut()
        .find(|p| format!("PR_kwDOtest{}", p.number) == id)
    else {
        return answer(
            200,
            json!({"errors": [{"type": "NOT_FOUND", "message": format!("Could not resolve to a node with the global id of '{id}'")}]}),
        );
    };
    p.draft = false;
    answer(
        200,
        json!({"data": {"markPullRequestReadyForReview": {"pullRequest": {"isDraft": false}}}}),
    )
}

// ---- How each forge writes a request ----

fn github_json(port: u16, p: &Pull, dir: &PathBuf, checks_pass: bool) -> Value {
    json!({
        "url": format!("http://127.0.0.1:{port}/repos/{OWNER}/{REPO}/pulls/{}", p.number),
        "id": 1000u64.wrapping_add(p.number),
        "number": p.number,
        "node_id": format!("PR_kwDOtest{}", p.number),
        "html_url": format!("https://github.example/{OWNER}/{REPO}/pull/{}", p.number),
        "state": p.state,
        "title": p.title,
        "body": p.body,
        "draft": p.draft,
        "merged": p.merged,
        "merged_at": if p.merged { json!("2026-12-02T00:00:00Z") } else { Value::Null },
        "mergeable_state": if checks_pass { "clean" } else { "blocked" },
        "head": {"label": format!("{OWNER}:{}", p.head), "ref": p.head, "sha": rev(dir, &p.head).unwrap_or_else(|| "0".repeat(40))},
        "base": {"label": format!("{OWNER}:{}", p.base), "ref": p.base, "sha": rev(dir, &p.base).unwrap_or_else(|| "0".repeat(40))},
        "labels": p.labels,
    })
}

/// A page of `items` with an RFC 8288 `Link` to the next, as GitHub and Gitea paginate.
fn page(
    items: Vec<Value>,
    page: usize,
    per_page: usize,
    next: impl Fn(usize) -> String,
) -> Response {
    let start = (page - 1) * per_page;
    let slice: Vec<Value> = items.iter().skip(start).take(per_page).cloned().collect();
    let mut response = answer(200, Value::Array(slice));
    if start + per_page < items.len() {
        let link = format!("<{}>; rel=\"next\"", next(page + 1));
        response.headers_mut().insert("link", link.parse().unwrap());
    }
    response
}

/// Whether GitLab `version` (`17.10.2-ee`; empty: a current one) is before `major.minor`.
fn gitlab_before(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    !version.is_empty() && (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < (major, minor)
}

const USERS: &[(u64, &str)] = &[(11, "alice"), (12, "bob")];

fn gitlab_json(p: &Pull, dir: &PathBuf) -> Value {
    json!({
        "id": 5000u64.wrapping_add(p.number),
        "iid": p.number,
        "project_id": 3,
        "title": p.title,
        "description": p.body,
        "state": if p.merged { "merged" } else if p.state == "open" { "opened" } else { "closed" },
        "source_branch": p.head,
        "target_branch": p.base,
        "sha": rev(dir, &p.head),
        "draft": p.title.starts_with("Draft:"),
        "labels": p.labels,
        "assignees": p.assignees,
        "reviewers": p.reviewers,
        "merge_when_pipeline_succeeds": p.auto_merge,
        "web_url": format!("https://gitlab.example/{OWNER}/{REPO}/-/merge_requests/{}", p.number),
    })
}

const LABELS: &[(u64, &str)] = &[(21, "image-updater"), (22, "deploy")];

fn gitea_json(p: &Pull, dir: &PathBuf) -> Value {
    json!({
        "id": 7000u64.wrapping_add(p.number),
        "number": p.number,
        "title": p.title,
        "body": p.body,
        "state": p.state,
        "merged": p.merged,
        "draft": p.title.starts_with("WIP:"),
        "html_url": format!("https://gitea.example/{OWNER}/{REPO}/pulls/{}", p.number),
        "head": {"ref": p.head, "label": p.head, "sha": rev(dir, &p.head)},
        "base": {"ref": p.base, "label": p.base, "sha": rev(dir, &p.base)},
        "labels": p.labels,
        "assignees": p.assignees,
    })
}
