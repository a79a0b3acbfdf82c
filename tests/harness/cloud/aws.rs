//! A test AWS: STS, the container credentials endpoint, IMDSv2, ECR and ECR Public, each from
//! its API reference, on one server (each SDK endpoint variable points at its path).
//!
//! Every ECR request's SigV4 signature is recomputed with the secret of the key it names
//! (the long-term test key, or a temporary key this server issued), and a temporary key's
//! session token must be sent and signed. STS verifies the web identity token with the test
//! OIDC issuer for the audience `sts.amazonaws.com`; the container endpoint wants the agent's
//! authorization token; IMDS answers only with the session token it gave.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine;

use super::{Issued, Judged, Oidc, form, serve};

pub const REGION: &str = "eu-west-1";
pub const KEY_ID: &str = "AKIDTESTECR";
pub const SECRET: &str = "test-secret-access-key";
pub const ROLE: &str = "arn:aws:iam::123456789012:role/image-updater";
pub const INSTANCE_ROLE: &str = "image-updater-instance";
pub const CONTAINER_TOKEN: &str = "container-agent-authorization";
pub const PASSWORD: &str = "ecr-issued-password-1";

/// Access keys the test AWS knows: id → secret and, for temporary keys, session token.
type Keys = Arc<Mutex<HashMap<String, (String, Option<String>)>>>;

pub struct Aws {
    pub url: String,
    pub judged: Arc<Judged>,
    pub oidc: Arc<Oidc>,
    /// How long ECR says its passwords last.
    pub password_life: Arc<Mutex<Duration>>,
    _task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct State {
    judged: Arc<Judged>,
    keys: Keys,
    oidc: Arc<Oidc>,
    imds: Arc<Issued>,
    password_life: Arc<Mutex<Duration>>,
}

impl State {
    /// Temporary keys, known from now on.
    fn temporary(&self, by: &str) -> (String, String, String) {
        let n = fastrand::u32(..);
        let id = format!("ASIA{}{n:08X}", by.to_uppercase());
        let secret = format!("temporary-secret-{n}");
        let token = format!("session-token-{n}");
        self.keys
            .lock()
            .unwrap()
            .insert(id.clone(), (secret.clone(), Some(token.clone())));
        (id, secret, token)
    }
}

fn in_an_hour() -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string()
}

impl Aws {
    pub async fn start(dir: &Path) -> Aws {
        let state = State {
            judged: Arc::default(),
            keys: Arc::new(Mutex::new(HashMap::from([(
                KEY_ID.to_string(),
                (SECRET.to_string(), None),
            )]))),
            oidc: Arc::new(Oidc::new(dir)),
            imds: Arc::default(),
            password_life: Arc::new(Mutex::new(Duration::from_secs(12 * 3600))),
        };
        let app = axum::Router::new()
            .route("/sts/", axum::routing::post(sts))
            .route("/container/credentials", axum::routing::get(container))
            .route("/latest/api/token", axum::routing::put(imds_token))
            .route(
                "/latest/meta-data/iam/security-credentials/",
                axum::routing::get(imds_role),
            )
            .route(
                "/latest/meta-data/iam/security-credentials/{role}",
                axum::routing::get(imds_keys),
            )
            .route("/ecr/", axum::routing::post(ecr))
            .route("/ecr-public/", axum::routing::post(ecr))
            .with_state(state.clone());
        let (url, task) = serve(app).await;
        Aws {
            url,
            judged: state.judged,
            oidc: state.oidc,
            password_life: state.password_life,
            _task: task,
        }
    }

    /// The projected service account token EKS gives a pod for STS.
    pub fn web_identity_token(&self) -> String {
        self.oidc.token("sts.amazonaws.com")
    }
}

/// The SigV4 check of a request, with the secret of the key it names (and, for a temporary
/// key, its session token sent).
fn signed_by_a_known_key(
    s: &State,
    (method, uri, headers, body): (&Method, &Uri, &HeaderMap, &[u8]),
    region: &str,
    service: &str,
) -> Result<(), String> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let pairs: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let key_id = header("authorization")
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .unwrap_or("")
        .to_string();
    let Some((secret, session)) = s.keys.lock().unwrap().get(&key_id).cloned() else {
        return Err(format!("unknown access key {key_id:?}"));
    };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    crate::harness::aws::verify(
        method.as_str(),
        path,
        &pairs,
        body,
        &secret,
        region,
        service,
    )?;
    match session {
        Some(t) if header("x-amz-security-token") != t => {
            Err("a temporary key without its session token".into())
        }
        _ => Ok(()),
    }
}

/// STS: `AssumeRoleWithWebIdentity` (the form's action, version and role, and the token
/// verified), or `AssumeRole` (signed by a known key).
async fn sts(
    axum::extract::State(s): axum::extract::State<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let f = form(&body);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    if get("Action") == "AssumeRole" {
        let mut verdict =
            signed_by_a_known_key(&s, (&method, &uri, &headers, &body), REGION, "sts");
        if verdict.is_ok()
            && (get("RoleArn") != ROLE
                || get("Version") != "2011-06-15"
                || get("RoleSessionName").is_empty())
        {
            verdict = Err(format!("AssumeRole {f:?}"));
        }
        if !s.judged.judge("sts", verdict) {
            return (
                StatusCode::FORBIDDEN,
                "<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message></Error></ErrorResponse>".into(),
            );
        }
        let (id, secret, token) = s.temporary("role");
        return (
            StatusCode::OK,
            format!(
                "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>{id}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey><SessionToken>{token}</SessionToken><Expiration>{}</Expiration></Credentials></AssumeRoleResult></AssumeRoleResponse>",
                in_an_hour()
            ),
        );
    }
    let mut verdict = s.oidc.check(get("WebIdentityToken"), "sts.amazonaws.com");
    if get("Action") != "AssumeRoleWithWebIdentity" || get("Version") != "2011-06-15" {
        verdict = Err(format!("not AssumeRoleWithWebIdentity 2011-06-15: {f:?}"));
    } else if get("RoleArn") != ROLE || get("RoleSessionName").is_empty() {
        verdict = Err(format!(
            "role {} session {:?}",
            get("RoleArn"),
            get("RoleSessionName")
        ));
    }
    if !s.judged.judge("sts", verdict) {
        return (
            StatusCode::BAD_REQUEST,
            "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Couldn't retrieve verification key from your identity provider</Message></Error></ErrorResponse>".into(),
        );
    }
    let (id, secret, token) = s.temporary("sts");
    (
        StatusCode::OK,
        format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials><SessionToken>{token}</SessionToken><SecretAccessKey>{secret}</SecretAccessKey><Expiration>{}</Expiration><AccessKeyId>{id}</AccessKeyId></Credentials><AssumedRoleUser><Arn>{ROLE}/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>",
            in_an_hour()
        ),
    )
}

fn keys_json(id: &str, secret: &str, token: &str) -> String {
    serde_json::json!({
        "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": id, "SecretAccessKey": secret,
        "Token": token, "Expiration": in_an_hour(), "RoleArn": ROLE,
    })
    .to_string()
}

/// The ECS/EKS agent: keys for the authorization token it gave the task.
async fn container(
    axum::extract::State(s): axum::extract::State<State>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    let verdict = if given == Some(CONTAINER_TOKEN) {
        Ok(())
    } else {
        Err(format!("authorization {given:?}"))
    };
    if !s.judged.judge("container", verdict) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"Message":"unauthorized"}"#.into(),
        );
    }
    let (id, secret, token) = s.temporary("ecs");
    (StatusCode::OK, keys_json(&id, &secret, &token))
}

/// IMDSv2's session token: only for a PUT that says how long it wants it (1 to 21600 s).
async fn imds_token(
    axum::extract::State(s): axum::extract::State<State>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let ttl = headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let verdict = match ttl {
        Some(1..=21600) => Ok(()),
        other => Err(format!("ttl {other:?}")),
    };
    if !s.judged.judge("imds-token", verdict) {
        return (StatusCode::BAD_REQUEST, String::new());
    }
    (
        StatusCode::OK,
        s.imds.issue("imds", Duration::from_secs(ttl.unwrap_or(1))),
    )
}

fn imds_session(s: &State, headers: &HeaderMap, endpoint: &'static str) -> bool {
    let token = headers
        .get("x-aws-ec2-metadata-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let verdict = if s.imds.valid(token) {
        Ok(())
    } else {
        Err("no valid IMDSv2 session token (an IMDSv1 request?)".to_string())
    };
    s.judged.judge(endpoint, verdict)
}

async fn imds_role(
    axum::extract::State(s): axum::extract::State<State>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    if !imds_session(&s, &headers, "imds-role") {
        return (StatusCode::UNAUTHORIZED, String::new());
    }
    (StatusCode::OK, format!("{INSTANCE_ROLE}\n"))
}

async fn imds_keys(
    axum::extract::State(s): axum::extract::State<State>,
    axum::extract::Path(role): axum::extract::Path<String>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    if !imds_session(&s, &headers, "imds-keys") || role != INSTANCE_ROLE {
        return (StatusCode::NOT_FOUND, String::new());
    }
    let (id, secret, token) = s.temporary("imds");
    (StatusCode::OK, keys_json(&id, &secret, &token))
}

/// ECR's and ECR Public's `GetAuthorizationToken`, signed by a key this AWS knows.
async fn ecr(
    axum::extract::State(s): axum::extract::State<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let public = uri.path().starts_with("/ecr-public");
    let (service, region, target, endpoint) = if public {
        (
            "ecr-public",
            "us-east-1",
            "SpencerFrontendService.GetAuthorizationToken",
            "ecr-public",
        )
    } else {
        (
            "ecr",
            REGION,
            "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
            "ecr",
        )
    };
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let verdict = signed_by_a_known_key(&s, (&method, &uri, &headers, &body), region, service)
        .and_then(|()| {
            if header("x-amz-target") == target
                && header("content-type") == "application/x-amz-json-1.1"
            {
                Ok(())
            } else {
                Err(format!("not {target}: {:?}", header("x-amz-target")))
            }
        });
    if !s.judged.judge(endpoint, verdict) {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match the signature you provided."}"#.into(),
        );
    }
    let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{PASSWORD}"));
    let life = *s.password_life.lock().unwrap();
    let expires = jiff::Timestamp::now().as_second() + life.as_secs() as i64;
    let data = serde_json::json!({"authorizationToken": token, "expiresAt": expires as f64});
    let answer = if public {
        serde_json::json!({ "authorizationData": data })
    } else {
        let mut data = data;
        data["proxyEndpoint"] =
            format!("https://123456789012.dkr.ecr.{REGION}.amazonaws.com").into();
        serde_json::json!({ "authorizationData": [data] })
    };
    (StatusCode::OK, answer.to_string())
}
