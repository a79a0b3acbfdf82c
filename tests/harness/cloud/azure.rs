//! A test Azure: Azure AD's v2 token endpoint, IMDS's managed identity endpoint, and an ACR
//! [`Front`] with `/oauth2/exchange` and the token service `/oauth2/token`, each from its
//! reference.
//!
//! Azure AD takes the client credentials grant for the test client with its secret, or with
//! a client assertion that the test OIDC issuer signed for `api://AzureADTokenExchange` (as
//! AKS's workload identity projects it), for the ACR scope only. IMDS wants `Metadata: true`,
//! the API version and the ACR resource. The exchange takes only an AD token this Azure
//! issued, for this registry's service; the token service only a refresh token the exchange
//! gave, for the user `00000000-0000-0000-0000-000000000000`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine;

use super::{Front, Issued, Judged, Oidc, form};

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
pub const CLIENT_SECRET: &str = "service-principal-secret";
pub const MANAGED: &str = "99999999-8888-7777-6666-555555555555";
pub const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";
const SCOPE: &str = "https://containerregistry.azure.net/.default";

pub struct Azure {
    pub front: Front,
    pub judged: Arc<Judged>,
    /// ACR refresh tokens: the registry's passwords.
    pub refresh: Arc<Issued>,
    pub oidc: Arc<Oidc>,
    /// How long AD tokens and refresh tokens last.
    pub life: Arc<Mutex<Duration>>,
}

#[derive(Clone)]
struct State {
    judged: Arc<Judged>,
    ad: Arc<Issued>,
    refresh: Arc<Issued>,
    oidc: Arc<Oidc>,
    host: Arc<std::sync::OnceLock<String>>,
    life: Arc<Mutex<Duration>>,
}

impl State {
    fn ad_token(
        &self,
        endpoint: &'static str,
        verdict: Result<(), String>,
    ) -> (StatusCode, String) {
        if !self.judged.judge(endpoint, verdict) {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#.into(),
            );
        }
        let life = *self.life.lock().unwrap();
        let token = self.ad.issue("aad", life);
        (
            StatusCode::OK,
            serde_json::json!({"token_type": "Bearer", "expires_in": life.as_secs(), "access_token": token}).to_string(),
        )
    }
}

impl Azure {
    pub async fn start(dir: &Path) -> Azure {
        let state = State {
            judged: Arc::default(),
            ad: Arc::default(),
            refresh: Arc::default(),
            oidc: Arc::new(Oidc::new(dir)),
            host: Arc::default(),
            life: Arc::new(Mutex::new(Duration::from_secs(3600))),
        };
        let refresh = state.refresh.clone();
        let accept: super::Accept =
            Arc::new(move |user, password| user == ACR_USER && refresh.valid(password));
        let routes = axum::Router::new()
            .route("/{tenant}/oauth2/v2.0/token", axum::routing::post(ad))
            .route("/metadata/identity/oauth2/token", axum::routing::get(imds))
            .route("/oauth2/exchange", axum::routing::post(exchange))
            .with_state(state.clone());
        let front = Front::start("/oauth2/token", accept, routes).await;
        state.host.set(front.host.clone()).unwrap();
        Azure {
            front,
            judged: state.judged,
            refresh: state.refresh,
            oidc: state.oidc,
            life: state.life,
        }
    }

    /// The token AKS projects for workload identity.
    pub fn federated_token(&self) -> String {
        self.oidc.token("api://AzureADTokenExchange")
    }
}

/// Azure AD's v2 token endpoint: client credentials, with a secret or an assertion.
async fn ad(
    axum::extract::State(s): axum::extract::State<State>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    body: Bytes,
) -> (StatusCode, String) {
    let f = form(&body);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let verdict = if tenant != TENANT
        || get("grant_type") != "client_credentials"
        || get("client_id") != CLIENT
        || get("scope") != SCOPE
    {
        Err(format!("tenant {tenant}, form {f:?}"))
    } else if !get("client_secret").is_empty() {
        (get("client_secret") == CLIENT_SECRET)
            .then_some(())
            .ok_or("wrong client secret".to_string())
    } else if get("client_assertion_type")
        == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    {
        s.oidc
            .check(get("client_assertion"), "api://AzureADTokenExchange")
    } else {
        Err("neither a secret nor an assertion".into())
    };
    s.ad_token("ad", verdict)
}

/// IMDS: the managed identity's token, for `Metadata: true` and the ACR resource.
async fn imds(
    axum::extract::State(s): axum::extract::State<State>,
    headers: HeaderMap,
    uri: Uri,
) -> (StatusCode, String) {
    let q = form(uri.query().unwrap_or("").as_bytes());
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let verdict = if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        Err("no Metadata: true".to_string())
    } else if get("api-version").is_empty()
        || get("resource") != "https://containerregistry.azure.net/"
        || !matches!(get("client_id"), "" | MANAGED)
    {
        Err(format!("query {q:?}"))
    } else {
        Ok(())
    };
    if !s.judged.judge("imds", verdict) {
        return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#.into());
    }
    let life = *s.life.lock().unwrap();
    let token = s.ad.issue("aad-mi", life);
    let expires_on = jiff::Timestamp::now().as_second() + life.as_secs() as i64;
    (
        StatusCode::OK,
        serde_json::json!({
            "access_token": token, "expires_in": life.as_secs().to_string(),
            "expires_on": expires_on.to_string(), "resource": "https://containerregistry.azure.net/",
            "token_type": "Bearer",
        })
        .to_string(),
    )
}

/// ACR's `/oauth2/exchange`: an AD token for this registry's service, for a refresh token
/// (a JWT whose `exp` says when it ends).
async fn exchange(
    axum::extract::State(s): axum::extract::State<State>,
    body: Bytes,
) -> (StatusCode, String) {
    let f = form(&body);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let verdict = if get("grant_type") != "access_token" {
        Err(format!("grant_type {:?}", get("grant_type")))
    } else if get("service") != s.host.get().unwrap().as_str() {
        Err(format!("service {:?}", get("service")))
    } else if !matches!(get("tenant"), "" | TENANT) {
        Err(format!("tenant {:?}", get("tenant")))
    } else if !s.ad.valid(get("access_token")) {
        Err("not an AD token this Azure issued".into())
    } else {
        Ok(())
    };
    if !s.judged.judge("exchange", verdict) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.into(),
        );
    }
    let life = *s.life.lock().unwrap();
    let exp = jiff::Timestamp::now().as_second() + life.as_secs() as i64;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let token = format!(
        "{}.{}.{}",
        b64(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        b64(serde_json::json!({"exp": exp, "grant_type": "refresh_token", "n": fastrand::u64(..)})),
        "signature"
    );
    s.refresh.accept(&token, life);
    (
        StatusCode::OK,
        serde_json::json!({ "refresh_token": token }).to_string(),
    )
}
