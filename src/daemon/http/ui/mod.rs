//! The status page (`[ui]`): what runs where and why, as HTML for people at `/` and
//! `/image/ALIAS`, and as JSON for scripts at `/api/v1/status` and `/api/v1/images/ALIAS`;
//! with hold, release and poll now for whoever holds the control token ([`auth`]).
//!
//! Server-rendered ([`page`]): every page reads whole without JavaScript; the little script
//! there is asks `/ui/changes` every few seconds and, when something changed, fetches the page
//! again and swaps its main part, so a webhook's commit shows without a reload. The rows are
//! the ones `image-updater status` prints ([`crate::daemon::overview`]); the matrix shows a
//! page of images at a time, filtered by image, environment and state, so a page costs the
//! same at 5,000 images as at 50 (docs/benchmarks.md).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use super::respond;
use crate::cluster::store::Record;
use crate::config::{Config, Image, parse_duration, ui};
use crate::daemon::budget::Plan;
use crate::daemon::control::{ControlFile, PollRequest};
use crate::daemon::engine::Shared;
use crate::daemon::overview::{self, Filter, Known, Row, State as RowState, TagsSeen};
use crate::state::{Action, Holds, ManualHold, Status, Write, this_second};

pub mod auth;
pub mod page;

use auth::{Access, Refused, Sessions, Tokens};

/// The largest form the page posts (a hold's reason is the longest part).
pub const MAX_FORM: usize = 8 * 1024;
/// The longest reason a hold may give.
pub const MAX_REASON: usize = 500;
/// How long what is read from etcd for a page is reused: a page is not worth a read per view.
const CLUSTER_FRESH: Duration = Duration::from_secs(2);

/// The status page's state: what it reads, and who may act.
pub struct Ui {
    pub config: watch::Receiver<Arc<Config>>,
    pub shared: Shared,
    pub control: ControlFile,
    pub polls: mpsc::Sender<PollRequest>,
    sessions: Sessions,
    /// The read token as last resolved, by its reference.
    read_token: tokio::sync::Mutex<Option<(String, String)>>,
    /// The budget plan of the config it was made from.
    plan: Mutex<Option<(Arc<Config>, Arc<Plan>)>>,
    /// In a cluster: the records and holds as last read from etcd, and when.
    cluster: tokio::sync::Mutex<Option<(Instant, Arc<ClusterFacts>)>>,
}

struct ClusterFacts {
    records: BTreeMap<String, Record>,
    holds: Holds,
}

/// What the page knows for one view.
pub struct Facts {
    pub config: Arc<Config>,
    pub plan: Arc<Plan>,
    pub holds: Holds,
    local: Arc<crate::state::StatusStore>,
    records: Option<Arc<ClusterFacts>>,
    members: Option<crate::cluster::Members>,
    pub generation: String,
}

impl Known for Facts {
    fn status(&self, alias: &str, environment: &str) -> Status {
        self.records
            .as_ref()
            .and_then(|c| c.records.get(alias))
            .and_then(|r| r.status.get(environment).cloned())
            .unwrap_or_else(|| self.local.get_brief(alias, environment))
    }

    fn owner(&self, image: &Image) -> Option<String> {
        overview::owner(self.members.as_ref(), image)
    }
}

impl Facts {
    /// The last writes of `alias` in `environment`, newest first.
    fn writes(&self, alias: &str, environment: &str) -> Vec<Write> {
        self.records
            .as_ref()
            .and_then(|c| c.records.get(alias))
            .and_then(|r| r.status.get(environment))
            .map(|s| s.writes.clone())
            .unwrap_or_else(|| self.local.get(alias, environment).writes)
    }

    /// The replicas, in a cluster: this one, and every live one.
    pub fn members(&self) -> Option<&crate::cluster::Members> {
        self.members.as_ref()
    }
}

/// The matrix's query: `?image=&env=&state=&page=`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct MatrixQuery {
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub page: Option<usize>,
    /// A message from the action just done, shown once.
    #[serde(default)]
    pub said: Option<String>,
}

/// A page of the matrix: images by environment.
pub struct Matrix {
    pub environments: Vec<String>,
    /// Each image's row: its cells by environment, `None` where it is not deployed.
    pub images: Vec<(String, Vec<Option<Row>>)>,
    pub total: usize,
    pub page: usize,
    pub pages: usize,
    pub query: MatrixQuery,
}

impl Ui {
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        shared: Shared,
        control: ControlFile,
        polls: mpsc::Sender<PollRequest>,
    ) -> Ui {
        Ui {
            config,
            shared,
            control,
            polls,
            sessions: Sessions::default(),
            read_token: tokio::sync::Mutex::new(None),
            plan: Mutex::new(None),
            cluster: tokio::sync::Mutex::new(None),
        }
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/", get(matrix))
            .route("/image/{alias}", get(image))
            .route("/api/v1/status", get(status_json))
            .route("/api/v1/images/{alias}", get(image_json))
            .route("/ui/changes", get(changes))
            .route("/ui/app.js", get(script))
            .route("/ui/style.css", get(style))
            .route("/ui/login", post(login))
            .route("/ui/logout", post(logout))
            .route("/ui/hold", post(hold))
            .route("/ui/release", post(release))
            .route("/ui/poll", post(poll_now))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_FORM))
            .with_state(self)
    }

    fn current(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// The tokens in force: the control token, and `[ui] read_token` resolved (once per
    /// reference; a token that cannot be resolved shuts reading, never opens it).
    async fn tokens(&self, config: &Config) -> Result<(String, Option<String>), String> {
        let Some(reference) = config.ui.as_ref().and_then(|u| u.read_token.as_ref()) else {
            return Ok((self.control.token.clone(), None));
        };
        let key = reference.to_string();
        let mut cached = self.read_token.lock().await;
        if let Some((k, token)) = cached.as_ref()
            && *k == key
        {
            return Ok((self.control.token.clone(), Some(token.clone())));
        }
        let token = match crate::secrets::resolve(reference, "ui").await {
            Ok(Some(secret)) => secret.into_text(),
            Ok(None) => return Err(format!("[ui] read_token {reference} is empty")),
            Err(e) => return Err(format!("[ui] read_token: {e}")),
        };
        *cached = Some((key, token.clone()));
        Ok((self.control.token.clone(), Some(token)))
    }

    /// The page is on, and what the request may do; otherwise the answer to give.
    async fn admit(&self, headers: &HeaderMap) -> Result<(Arc<Config>, Access), Response> {
        let config = self.current();
        if config.ui.is_none() {
            return Err(respond(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "the status page is off: enable it with a [ui] section; try /metrics, /healthz or /readyz\n".into(),
            ));
        }
        let (control, read) = self.tokens(&config).await.map_err(|e| {
            tracing::warn!(error = %e, "status page: reading is refused until the read token resolves");
            respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("{e}\n"),
            )
        })?;
        let tokens = Tokens {
            control: &control,
            read: read.as_deref(),
        };
        Ok((config, tokens.access(headers, &self.sessions)))
    }

    fn plan(&self, config: &Arc<Config>) -> Arc<Plan> {
        let mut cached = self.plan.lock().expect("plan lock");
        match cached.as_ref() {
            Some((c, plan)) if Arc::ptr_eq(c, config) => plan.clone(),
            _ => {
                let plan = Arc::new(Plan::new(config));
                *cached = Some((config.clone(), plan.clone()));
                plan
            }
        }
    }

    /// What a view shows: from this daemon's memory and state dir, or in a cluster from
    /// etcd (read at most every [`CLUSTER_FRESH`]), so any replica shows every image.
    async fn facts(&self, config: Arc<Config>) -> Result<Facts, String> {
        let plan = self.plan(&config);
        let members = self.shared.members.get().map(|m| m.borrow().clone());
        let (holds, records) = match self.shared.handover.get() {
            None => (Holds::read(&self.shared.state_dir), None),
            Some(handover) => {
                let mut cached = self.cluster.lock().await;
                let fresh = cached
                    .as_ref()
                    .filter(|(at, _)| at.elapsed() < CLUSTER_FRESH)
                    .map(|(_, f)| f.clone());
                let facts = match fresh {
                    Some(f) => f,
                    None => {
                        let store = handover.store();
                        let records = store.records().await.map_err(|e| e.to_string())?;
                        let holds = store.holds().await.map_err(|e| e.to_string())?;
                        let f = Arc::new(ClusterFacts { records, holds });
                        *cached = Some((Instant::now(), f.clone()));
                        f
                    }
                };
                (facts.holds.clone(), Some(facts))
            }
        };
        let generation = {
            let holds_text = serde_json::to_vec(&holds).unwrap_or_default();
            let records_at: u64 = records.as_ref().map_or(0, |c| {
                c.records
                    .values()
                    .filter_map(|r| r.at)
                    .map(|t| t.as_millisecond().unsigned_abs())
                    .fold(0u64, u64::wrapping_add)
            });
            format!(
                "{}-{:x}-{records_at:x}",
                self.shared.status.version(),
                fnv(&holds_text)
            )
        };
        Ok(Facts {
            config,
            plan,
            holds,
            local: self.shared.status.clone(),
            records,
            members,
            generation,
        })
    }

    /// The matrix the query asks for.
    fn matrix(&self, facts: &Facts, query: MatrixQuery) -> Matrix {
        let config = &facts.config;
        let environments: Vec<String> = config
            .environments
            .keys()
            .filter(|e| {
                query
                    .env
                    .as_ref()
                    .is_none_or(|want| want.is_empty() || want == *e)
            })
            .cloned()
            .collect();
        let filter = Filter {
            image: query.image.clone().filter(|i| !i.is_empty()),
            exact: false,
            environment: query.env.clone().filter(|e| !e.is_empty()),
            state: None,
        };
        let state = query.state.as_deref().and_then(RowState::parse);
        let per_page = config.ui.as_ref().map_or(ui::PAGE_SIZE, |u| u.page_size);
        let selected: Vec<&Image> = config
            .images
            .values()
            .filter(|i| filter.image(&i.alias))
            .filter(|i| {
                filter
                    .environment
                    .as_ref()
                    .is_none_or(|e| i.deployments.iter().any(|d| d.environment == *e))
            })
            .collect();
        let group = |rows: Vec<Row>| {
            let mut images: Vec<(String, Vec<Option<Row>>)> = Vec::new();
            for row in rows {
                if images.last().is_none_or(|(alias, _)| *alias != row.image) {
                    images.push((row.image.clone(), vec![None; environments.len()]));
                }
                if let Some(i) = environments.iter().position(|e| *e == row.environment)
                    && let Some((_, cells)) = images.last_mut()
                {
                    cells[i] = Some(row);
                }
            }
            images
        };
        let page_of = |total: usize| {
            let pages = total.div_ceil(per_page).max(1);
            let page = query.page.unwrap_or(1).clamp(1, pages);
            (page, pages, (page - 1).saturating_mul(per_page))
        };
        // Only a state filter needs every selected image's rows; otherwise only the page's
        // are built.
        let (images, total, page, pages) = match state {
            None => {
                let total = selected.len();
                let (page, pages, start) = page_of(total);
                let shown = selected.into_iter().skip(start).take(per_page);
                let rows =
                    overview::rows_of(config, &facts.plan, facts, &facts.holds, shown, &filter);
                (group(rows), total, page, pages)
            }
            Some(state) => {
                let rows =
                    overview::rows_of(config, &facts.plan, facts, &facts.holds, selected, &filter);
                let mut images = group(rows);
                images.retain(|(_, cells)| cells.iter().flatten().any(|r| r.state == state));
                let total = images.len();
                let (page, pages, start) = page_of(total);
                let images = images.into_iter().skip(start).take(per_page).collect();
                (images, total, page, pages)
            }
        };
        Matrix {
            environments,
            images,
            total,
            page,
            pages,
            query,
        }
    }
}

/// FNV-1a: a cheap fingerprint of what the page shows, to tell whether it changed.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

// ---- Reading ----

/// How a refusal to read is answered: a sign-in page for a browser, JSON for a script.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    Browser,
    Script,
}

impl Ui {
    /// What a view may show, and who asks; or the answer when the page is off, the request
    /// may not read, or the state cannot be read.
    async fn readable(
        &self,
        headers: &HeaderMap,
        reader: Reader,
    ) -> Result<(Facts, Access), Response> {
        let (config, access) = self.admit(headers).await?;
        if !access.can_read() {
            return Err(match reader {
                Reader::Browser => html(StatusCode::UNAUTHORIZED, page::sign_in(None)),
                Reader::Script => json_error(
                    StatusCode::UNAUTHORIZED,
                    "a token is required to read (Authorization: Bearer)",
                ),
            });
        }
        let facts = self.facts(config).await.map_err(|e| match reader {
            Reader::Browser => unavailable(&e),
            Reader::Script => json_error(StatusCode::SERVICE_UNAVAILABLE, &e),
        })?;
        Ok((facts, access))
    }
}

type Page = State<Arc<Ui>>;

async fn matrix(State(ui): Page, headers: HeaderMap, Query(query): Query<MatrixQuery>) -> Response {
    let (facts, access) = match ui.readable(&headers, Reader::Browser).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let m = ui.matrix(&facts, query);
    html(StatusCode::OK, page::matrix(&facts, &m, &access))
}

/// One image: each environment's facts, writes, tags and holds.
pub struct Detail {
    pub alias: String,
    pub rows: Vec<Row>,
    pub writes: Vec<(String, Vec<Write>)>,
    pub tags: Vec<(String, Option<Arc<TagsSeen>>)>,
    pub actions: Vec<Action>,
    pub said: Option<String>,
}

#[derive(Serialize)]
struct DetailJson<'a> {
    image: &'a str,
    rows: &'a [Row],
    writes: BTreeMap<&'a str, &'a [Write]>,
    tags: BTreeMap<&'a str, Option<&'a TagsSeen>>,
    actions: &'a [Action],
    generation: &'a str,
}

impl Ui {
    fn detail(&self, facts: &Facts, alias: &str, said: Option<String>) -> Option<Detail> {
        let image = facts.config.images.get(alias)?;
        let filter = Filter {
            image: Some(alias.to_string()),
            exact: true,
            ..Filter::default()
        };
        let rows = overview::rows(&facts.config, &facts.plan, facts, &facts.holds, &filter);
        let envs = image.deployments.iter().map(|d| d.environment.clone());
        Some(Detail {
            alias: alias.to_string(),
            writes: envs
                .clone()
                .map(|e| {
                    let writes = facts.writes(alias, &e);
                    (e, writes)
                })
                .collect(),
            tags: envs
                .map(|e| {
                    let seen = self.shared.explained.get(alias, &e);
                    (e, seen)
                })
                .collect(),
            actions: facts.holds.actions_of(alias).take(20).cloned().collect(),
            rows,
            said,
        })
    }
}

async fn image(
    State(ui): Page,
    headers: HeaderMap,
    Path(alias): Path<String>,
    Query(query): Query<MatrixQuery>,
) -> Response {
    let (facts, access) = match ui.readable(&headers, Reader::Browser).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match ui.detail(&facts, &alias, query.said) {
        Some(d) => html(StatusCode::OK, page::image(&facts, &d, &access)),
        None => html(
            StatusCode::NOT_FOUND,
            page::message(
                &facts,
                "No such image",
                &format!("No image `{alias}` in the running config."),
                &access,
            ),
        ),
    }
}

async fn status_json(
    State(ui): Page,
    headers: HeaderMap,
    Query(query): Query<MatrixQuery>,
) -> Response {
    let (facts, _) = match ui.readable(&headers, Reader::Script).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let m = ui.matrix(&facts, query);
    let rows: Vec<&Row> = m
        .images
        .iter()
        .flat_map(|(_, c)| c.iter().flatten())
        .collect();
    let registries: Vec<_> = facts
        .plan
        .registries
        .values()
        .map(|r| {
            serde_json::json!({
                "registry": r.registry,
                "rate": r.rate,
                "source": r.source,
                "images": r.images,
                "demand": r.demand,
                "stretch": r.stretch,
            })
        })
        .collect();
    let body = serde_json::json!({
        "generation": facts.generation,
        "page": m.page,
        "pages": m.pages,
        "images": m.total,
        "environments": m.environments,
        "rows": rows,
        "holds": facts.holds.holds,
        "registries": registries,
        "cluster": facts.members().map(|m| serde_json::json!({"me": m.me, "live": m.live})),
    });
    respond(StatusCode::OK, "application/json", body.to_string())
}

async fn image_json(State(ui): Page, headers: HeaderMap, Path(alias): Path<String>) -> Response {
    let (facts, _) = match ui.readable(&headers, Reader::Script).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Some(d) = ui.detail(&facts, &alias, None) else {
        return json_error(
            StatusCode::NOT_FOUND,
            &format!("no image `{alias}` in the running config"),
        );
    };
    let body = DetailJson {
        image: &d.alias,
        rows: &d.rows,
        writes: d
            .writes
            .iter()
            .map(|(e, w)| (e.as_str(), w.as_slice()))
            .collect(),
        tags: d
            .tags
            .iter()
            .map(|(e, t)| (e.as_str(), t.as_deref()))
            .collect(),
        actions: &d.actions,
        generation: &facts.generation,
    };
    respond(
        StatusCode::OK,
        "application/json",
        serde_json::to_string(&body).expect("the detail serializes"),
    )
}

/// `{"generation": …}`: changes whenever what the page shows does.
async fn changes(State(ui): Page, headers: HeaderMap) -> Response {
    match ui.readable(&headers, Reader::Script).await {
        Ok((facts, _)) => respond(
            StatusCode::OK,
            "application/json",
            serde_json::json!({ "generation": facts.generation }).to_string(),
        ),
        Err(r) => r,
    }
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", page::SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", page::STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = respond(StatusCode::OK, content_type, body.to_string());
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    r
}

// ---- Acting ----

#[derive(Debug, Default, Deserialize)]
struct ActionForm {
    #[serde(default)]
    image: String,
    #[serde(default)]
    env: Option<String>,
    /// RFC 3339, or a browser's `datetime-local` (read as UTC).
    #[serde(default)]
    until: Option<String>,
    /// A duration such as `24h`.
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    csrf: Option<String>,
    /// Who acts, for a script with the bearer token (a session acts as its name).
    #[serde(default)]
    by: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
}

async fn login(State(ui): Page, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let (config, _) = match ui.admit(&headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Err(e) = auth::same_site(&headers) {
        return refused(StatusCode::FORBIDDEN, &e, false);
    }
    let (control, read) = match ui.tokens(&config).await {
        Ok(t) => t,
        Err(e) => return unavailable(&e),
    };
    let tokens = Tokens {
        control: &control,
        read: read.as_deref(),
    };
    let Some(can_act) = tokens.judge(form.token.trim()) else {
        tracing::warn!("status page: a sign-in with a wrong token was refused");
        return html(
            StatusCode::UNAUTHORIZED,
            page::sign_in(Some(&Refused::WrongToken.to_string())),
        );
    };
    let name = match auth::name(if form.name.trim().is_empty() {
        "browser"
    } else {
        &form.name
    }) {
        Ok(n) => n,
        Err(e) => return html(StatusCode::BAD_REQUEST, page::sign_in(Some(&e.to_string()))),
    };
    let (id, _) = ui.sessions.open(name.clone(), can_act);
    tracing::info!(by = %name, can_act, "status page: signed in");
    see_other("/", Some(auth::set_cookie(Some(&id))))
}

async fn logout(State(ui): Page, headers: HeaderMap, Form(form): Form<ActionForm>) -> Response {
    if let Err(e) = auth::same_site(&headers) {
        return refused(StatusCode::FORBIDDEN, &e, false);
    }
    if let Some((id, session)) = ui.sessions.of(&headers) {
        if let Err(e) = auth::csrf(Some(&session.csrf), form.csrf.as_deref()) {
            return refused(StatusCode::FORBIDDEN, &e, false);
        }
        ui.sessions.close(&id);
    }
    see_other("/", Some(auth::set_cookie(None)))
}

/// Who acts, and whether the answer is for a script (JSON) or a browser (a redirect); or the
/// refusal. Checked in this order: the page is on, the post is from this site, the token or
/// session may act, the session's CSRF token.
async fn actor(
    ui: &Ui,
    headers: &HeaderMap,
    form: &ActionForm,
) -> Result<(Arc<Config>, String, bool), Response> {
    let (config, access) = ui.admit(headers).await?;
    let script = matches!(access, Access::Act { csrf: None, .. });
    auth::same_site(headers).map_err(|e| refused(StatusCode::FORBIDDEN, &e, script))?;
    let (by, csrf) = match access {
        Access::Act { by, csrf } => (by, csrf),
        Access::Read => return Err(refused(StatusCode::FORBIDDEN, &Refused::ReadOnly, false)),
        Access::None => {
            return Err(json_error(
                StatusCode::UNAUTHORIZED,
                "the control token is required (Authorization: Bearer, from control.json in the state dir)",
            ));
        }
    };
    auth::csrf(csrf.as_deref(), form.csrf.as_deref())
        .map_err(|e| refused(StatusCode::FORBIDDEN, &e, script))?;
    let by = match (script, &form.by) {
        (true, Some(name)) => {
            auth::name(name).map_err(|e| refused(StatusCode::BAD_REQUEST, &e, true))?
        }
        _ => by,
    };
    Ok((config, by, script))
}

/// The image and environment a form names, deployed in the running config.
fn deployed(config: &Config, form: &ActionForm) -> Result<(String, Option<String>), String> {
    let Some(image) = config.images.get(&form.image) else {
        return Err(format!("no image `{}` in the running config", form.image));
    };
    let env = form.env.clone().filter(|e| !e.is_empty());
    if let Some(env) = &env
        && !image.deployments.iter().any(|d| d.environment == *env)
    {
        return Err(format!("image `{}` is not deployed to `{env}`", form.image));
    }
    Ok((image.alias.clone(), env))
}

/// Who acts on which image in which environment, for a hold or a release.
struct Acting {
    config: Arc<Config>,
    by: String,
    script: bool,
    alias: String,
    env: String,
}

/// [`actor`], then the image and environment the form names, deployed in the running config
/// (an environment is required).
async fn acting_in_env(
    ui: &Ui,
    headers: &HeaderMap,
    form: &ActionForm,
) -> Result<Acting, Response> {
    let (config, by, script) = actor(ui, headers, form).await?;
    let (alias, env) = match deployed(&config, form) {
        Ok((alias, Some(env))) => (alias, env),
        Ok((_, None)) => {
            return Err(answer_error(
                script,
                StatusCode::BAD_REQUEST,
                "env is required",
            ));
        }
        Err(e) => return Err(answer_error(script, StatusCode::BAD_REQUEST, &e)),
    };
    Ok(Acting {
        config,
        by,
        script,
        alias,
        env,
    })
}

async fn hold(State(ui): Page, headers: HeaderMap, Form(form): Form<ActionForm>) -> Response {
    let Acting {
        config: _,
        by,
        script,
        alias,
        env,
    } = match acting_in_env(&ui, &headers, &form).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let until = match until(&form) {
        Ok(u) => u,
        Err(e) => return answer_error(script, StatusCode::BAD_REQUEST, &e),
    };
    let reason = form
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if let Some(r) = reason
        && (r.chars().count() > MAX_REASON || r.chars().any(char::is_control))
    {
        return answer_error(
            script,
            StatusCode::BAD_REQUEST,
            &format!("a reason is at most {MAX_REASON} characters on one line"),
        );
    }
    let hold = ManualHold {
        since: this_second().to_string(),
        until,
        reason: reason.map(str::to_string),
        by: Some(by.clone()),
    };
    let said = hold.describe();
    if let Err(e) = ui
        .update_holds(|h| h.hold(&alias, &env, hold.clone()))
        .await
    {
        return answer_error(script, StatusCode::SERVICE_UNAVAILABLE, &e);
    }
    tracing::info!(image = %alias, environment = %env, %by, until = hold.until.as_deref().unwrap_or("released"), reason = hold.reason.as_deref().unwrap_or(""), "held from the status page");
    done(script, &alias, &format!("{alias} in {env}: {said}"))
}

/// A hold's end: `until` (RFC 3339, or a browser's `datetime-local`, read as UTC) or `for`.
fn until(form: &ActionForm) -> Result<Option<String>, String> {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    match (given(&form.until), given(&form.for_)) {
        (Some(_), Some(_)) => Err("give until or for, not both".into()),
        (Some(t), None) => {
            let parsed = t.parse::<jiff::Timestamp>().or_else(|_| {
                t.parse::<jiff::civil::DateTime>()
                    .and_then(|d| jiff::tz::TimeZone::UTC.to_timestamp(d))
            });
            match parsed {
                Ok(t) if t > jiff::Timestamp::now() => Ok(Some(t.to_string())),
                Ok(t) => Err(format!("until {t} is in the past")),
                Err(_) => Err(format!(
                    "until `{t}` is not a time such as 2026-12-01T09:00:00Z"
                )),
            }
        }
        (None, Some(d)) => {
            let d = parse_duration(&d)?;
            let d = jiff::SignedDuration::try_from(d)
                .map_err(|_| "the duration is too long".to_string())?;
            this_second()
                .checked_add(d)
                .map(|t| Some(t.to_string()))
                .map_err(|_| "the duration is too long".to_string())
        }
        (None, None) => Ok(None),
    }
}

async fn release(State(ui): Page, headers: HeaderMap, Form(form): Form<ActionForm>) -> Response {
    let Acting {
        config,
        by,
        script,
        alias,
        env,
    } = match acting_in_env(&ui, &headers, &form).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    // A person's revert is held in the status the daemon keeps: releasing lifts it too.
    let facts = match ui.facts(config).await {
        Ok(f) => f,
        Err(e) => return answer_error(script, StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let revert = facts.status(&alias, &env).held.map(|h| h.value);
    let released = std::sync::atomic::AtomicBool::new(false);
    let changed = ui
        .update_holds(|h| {
            let r = h.release(&alias, &env, revert.as_deref(), &by);
            released.store(r, std::sync::atomic::Ordering::Relaxed);
        })
        .await;
    if let Err(e) = changed {
        return answer_error(script, StatusCode::SERVICE_UNAVAILABLE, &e);
    }
    if !released.load(std::sync::atomic::Ordering::Relaxed) {
        return answer_error(
            script,
            StatusCode::CONFLICT,
            &format!("{alias} in {env}: nothing is held"),
        );
    }
    tracing::info!(image = %alias, environment = %env, %by, revert = revert.as_deref().unwrap_or(""), "released from the status page");
    done(script, &alias, &format!("{alias} in {env}: released"))
}

async fn poll_now(State(ui): Page, headers: HeaderMap, Form(form): Form<ActionForm>) -> Response {
    let (config, by, script) = match actor(&ui, &headers, &form).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (alias, env) = match deployed(&config, &form) {
        Ok(d) => d,
        Err(e) => return answer_error(script, StatusCode::BAD_REQUEST, &e),
    };
    let (reply, answer) = oneshot::channel();
    let request = PollRequest {
        image: alias.clone(),
        env: env.clone(),
        reply,
    };
    if ui.polls.try_send(request).is_err() {
        return answer_error(
            script,
            StatusCode::SERVICE_UNAVAILABLE,
            "too many poll requests waiting; try again",
        );
    }
    tracing::info!(image = %alias, environment = env.as_deref().unwrap_or("all"), %by, "poll requested from the status page");
    let action = Action {
        at: this_second().to_string(),
        by: by.clone(),
        action: "poll".into(),
        image: alias.clone(),
        environment: env.clone().unwrap_or_else(|| "all".into()),
        detail: None,
    };
    // Remembered beside the holds; the check goes on if that fails (it is said in the log).
    if let Err(e) = ui.update_holds(|h| h.remember(action.clone())).await {
        tracing::warn!(error = %e, "cannot remember the poll in the holds");
    }
    // The page does not wait for the cycle: it shows the outcome when it lands. The answer
    // is logged.
    tokio::spawn(async move {
        match answer.await {
            Ok(Ok(a)) => {
                tracing::debug!(answer = ?serde_json::to_string(&a).ok(), "poll from the status page done")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "poll from the status page refused"),
            Err(_) => {}
        }
    });
    let envs = env.map(|e| format!(" in {e}")).unwrap_or_default();
    done(
        script,
        &alias,
        &format!("{alias}{envs}: a check was asked for; this page shows what it finds"),
    )
}

impl Ui {
    /// Changes the holds where the daemon reads them: its state dir's `holds.json`, or in a
    /// cluster etcd's holds key, atomically against other writers.
    async fn update_holds(&self, change: impl Fn(&mut Holds)) -> Result<(), String> {
        match self.shared.handover.get() {
            None => {
                let dir = self.shared.state_dir.clone();
                let mut holds = Holds::read(&dir);
                change(&mut holds);
                holds
                    .write(&dir)
                    .map_err(|e| format!("cannot write {}: {e}", Holds::path(&dir).display()))
            }
            Some(handover) => {
                handover
                    .store()
                    .update_holds(change)
                    .await
                    .map_err(|e| e.to_string())?;
                // The next view reads them again.
                *self.cluster.lock().await = None;
                Ok(())
            }
        }
    }
}

// ---- Answers ----

fn html(status: StatusCode, body: String) -> Response {
    let mut r = respond(status, "text/html; charset=utf-8", body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json_error(status: StatusCode, text: &str) -> Response {
    respond(
        status,
        "application/json",
        serde_json::json!({ "error": text }).to_string(),
    )
}

fn unavailable(e: &str) -> Response {
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain; charset=utf-8",
        format!("the status page cannot read the state: {e}\n"),
    )
}

/// A refused post: JSON for a script, a short page for a browser.
fn refused(status: StatusCode, why: &Refused, script: bool) -> Response {
    tracing::warn!(reason = %why, "status page: a post was refused");
    answer_error(script, status, &why.to_string())
}

fn answer_error(script: bool, status: StatusCode, text: &str) -> Response {
    if script {
        json_error(status, text)
    } else {
        html(status, page::refused(text))
    }
}

/// A done action: JSON for a script; for a browser, back to the image's page, saying so.
fn done(script: bool, alias: &str, said: &str) -> Response {
    if script {
        return respond(
            StatusCode::OK,
            "application/json",
            serde_json::json!({ "ok": true, "said": said }).to_string(),
        );
    }
    see_other(
        &format!(
            "/image/{}?said={}",
            page::path_segment(alias),
            page::path_segment(said)
        ),
        None,
    )
}

fn see_other(location: &str, cookie: Option<String>) -> Response {
    let mut r = (StatusCode::SEE_OTHER, "").into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    r
}
