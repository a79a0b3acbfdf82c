//! A test Google: the OAuth 2.0 token endpoint, STS, IAM Credentials and the metadata
//! server, each from its reference, on an Artifact Registry [`Front`] whose token service
//! (`/v2/token`) takes `oauth2accesstoken` with an access token this Google issued.
//!
//! The token endpoint verifies the service account JWT's RS256 signature with the key's
//! public half and its claims (issuer the account, audience the endpoint, the cloud-platform
//! scope, at most an hour); STS verifies the subject token with the test OIDC issuer for the
//! pool's audience and the RFC 8693 fields; the metadata server wants `Metadata-Flavor:
//! Google` and says it back.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{Front, Issued, Judged, Oidc, form, key_pair};

pub const EMAIL: &str = "image-updater@project.iam.gserviceaccount.com";
pub const AUDIENCE: &str =
    "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k8s";
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const REFRESH: &str = "user-refresh-token";

pub struct Google {
    pub front: Front,
    pub judged: Arc<Judged>,
    /// Access tokens for the registry.
    pub access: Arc<Issued>,
    pub oidc: Arc<Oidc>,
    /// The service account key's PEM.
    pub key_pem: String,
    /// How long access tokens last.
    pub life: Arc<Mutex<Duration>>,
}

#[derive(Clone)]
struct State {
    judged: Arc<Judged>,
    access: Arc<Issued>,
    federated: Arc<Issued>,
    oidc: Arc<Oidc>,
    verify: Arc<jsonwebtoken::DecodingKey>,
    url: Arc<OnceLock<String>>,
    life: Arc<Mutex<Duration>>,
}

impl State {
    fn token(&self, endpoint: &'static str, verdict: Result<(), String>) -> (StatusCode, String) {
        if !self.judged.judge(endpoint, verdict) {
            return (
                StatusCode::BAD_REQUEST,
                r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#.into(),
            );
        }
        let life = *self.life.lock().unwrap();
        let token = self.access.issue("ya29", life);
        (
            StatusCode::OK,
            serde_json::json!({"access_token": token, "expires_in": life.as_secs(), "token_type": "Bearer"}).to_string(),
        )
    }
}

impl Google {
    pub async fn start(dir: &Path) -> Google {
        let (key_pem, verify) = key_pair(dir, "service-account", true);
        let state = State {
            judged: Arc::default(),
            access: Arc::default(),
            federated: Arc::default(),
            oidc: Arc::new(Oidc::new(dir)),
            verify: Arc::new(verify),
            url: Arc::default(),
            life: Arc::new(Mutex::new(Duration::from_secs(3600))),
        };
        let access = state.access.clone();
        let accept: super::Accept =
            Arc::new(move |user, password| user == "oauth2accesstoken" && access.valid(password));
        let routes = axum::Router::new()
            .route("/token", axum::routing::post(token))
            .route("/sts/v1/token", axum::routing::post(sts))
            .route("/iam/generateAccessToken", axum::routing::post(impersonate))
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                axum::routing::get(metadata),
            )
            .with_state(state.clone());
        let front = Front::start("/v2/token", accept, routes).await;
        state.url.set(front.url.clone()).unwrap();
        Google {
            front,
            judged: state.judged,
            access: state.access,
            oidc: state.oidc,
            key_pem,
            life: state.life,
        }
    }

    /// A service account key file, as the console downloads it, pointing at this Google.
    pub fn key_file(&self) -> String {
        serde_json::json!({
            "type": "service_account", "project_id": "project", "private_key_id": "k1",
            "private_key": self.key_pem, "client_email": EMAIL, "client_id": "1",
            "token_uri": format!("{}/token", self.front.url),
        })
        .to_string()
    }

    /// An `external_account` file for a Kubernetes pool, its token in `token_file`; through
    /// IAM Credentials when `impersonate`.
    pub fn external_account_file(&self, token_file: &Path, impersonate: bool) -> String {
        let mut file = serde_json::json!({
            "type": "external_account", "audience": AUDIENCE,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/sts/v1/token", self.front.url),
            "credential_source": {"file": token_file, "format": {"type": "text"}},
        });
        if impersonate {
            file["service_account_impersonation_url"] =
                format!("{}/iam/generateAccessToken", self.front.url).into();
        }
        file.to_string()
    }

    /// An `authorized_user` file, as `gcloud auth application-default login` writes it.
    pub fn user_file(&self) -> String {
        serde_json::json!({
            "type": "authorized_user", "client_id": "client.apps.googleusercontent.com",
            "client_secret": "client-secret", "refresh_token": REFRESH,
            "token_uri": format!("{}/token", self.front.url),
        })
        .to_string()
    }
}

/// The token endpoint: the JWT bearer grant, judged by the key and claims; the refresh grant.
async fn token(
    axum::extract::State(s): axum::extract::State<State>,
    body: Bytes,
) -> (StatusCode, String) {
    let f = form(&body);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let verdict = match get("grant_type") {
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let audience = format!("{}/token", s.url.get().unwrap());
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.set_audience(&[&audience]);
            validation.set_issuer(&[EMAIL]);
            jsonwebtoken::decode::<serde_json::Value>(get("assertion"), &s.verify, &validation)
                .map_err(|e| format!("the assertion does not hold: {e}"))
                .and_then(|t| {
                    let c = t.claims;
                    let life = c["exp"].as_i64().unwrap_or(0) - c["iat"].as_i64().unwrap_or(0);
                    if c["scope"]
                        .as_str()
                        .is_some_and(|sc| sc.split(' ').any(|x| x == SCOPE))
                        && (1..=3600).contains(&life)
                    {
                        Ok(())
                    } else {
                        Err(format!("scope or lifetime: {c}"))
                    }
                })
        }
        "refresh_token" if get("refresh_token") == REFRESH && !get("client_secret").is_empty() => {
            Ok(())
        }
        other => Err(format!("grant {other:?}")),
    };
    s.token("token", verdict)
}

/// STS `v1/token`: an RFC 8693 exchange of the pool's subject token.
async fn sts(
    axum::extract::State(s): axum::extract::State<State>,
    body: Bytes,
) -> (StatusCode, String) {
    let f = form(&body);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let verdict = if get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange"
        || get("audience") != AUDIENCE
        || get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token"
        || get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt"
        || get("scope") != SCOPE
    {
        Err(format!("not the pool's token exchange: {f:?}"))
    } else {
        s.oidc.check(get("subject_token"), AUDIENCE)
    };
    if !s.judged.judge("sts", verdict) {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_grant","error_description":"The audience in ID Token does not match the expected audience."}"#.into(),
        );
    }
    let life = *s.life.lock().unwrap();
    let token = s.federated.issue("federated", life);
    // Without impersonation, the federated token is itself the registry's password.
    s.access.accept(&token, life);
    let answer = serde_json::json!({
        "access_token": token,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer", "expires_in": life.as_secs(),
    });
    (StatusCode::OK, answer.to_string())
}

/// IAM Credentials `generateAccessToken`, for a federated token.
async fn impersonate(
    axum::extract::State(s): axum::extract::State<State>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let said: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let verdict = if !s.federated.valid(bearer) {
        Err("not a federated token this Google issued".to_string())
    } else if said["scope"][0] != SCOPE {
        Err(format!("scope {}", said["scope"]))
    } else {
        Ok(())
    };
    if !s.judged.judge("iam", verdict) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"error":{"code":401,"message":"Request had invalid authentication credentials."}}"#
                .into(),
        );
    }
    let life = *s.life.lock().unwrap();
    let token = s.access.issue("ya29-impersonated", life);
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(life.as_secs() as i64);
    (
        StatusCode::OK,
        serde_json::json!({"accessToken": token, "expireTime": expires.to_string()}).to_string(),
    )
}

/// The metadata server: only for `Metadata-Flavor: Google`, and saying it back.
async fn metadata(
    axum::extract::State(s): axum::extract::State<State>,
    headers: HeaderMap,
) -> Response {
    let flavor = headers.get("metadata-flavor").and_then(|v| v.to_str().ok());
    let verdict = if flavor == Some("Google") {
        Ok(())
    } else {
        Err(format!("Metadata-Flavor {flavor:?}"))
    };
    if !s.judged.judge("metadata", verdict) {
        return (
            StatusCode::FORBIDDEN,
            [("metadata-flavor", "Google")],
            "Missing Metadata-Flavor",
        )
            .into_response();
    }
    let life = *s.life.lock().unwrap();
    let token = s.access.issue("ya29-metadata", life);
    let body = serde_json::json!({"access_token": token, "expires_in": life.as_secs(), "token_type": "Bearer"});
    (
        [
            ("metadata-flavor", "Google"),
            ("content-type", "application/json"),
        ],
        body.to_string(),
    )
        .into_response()
}
