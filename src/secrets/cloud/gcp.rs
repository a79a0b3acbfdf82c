//! `gcp`: Artifact Registry (`REGION-docker.pkg.dev`) and Container Registry (`gcr.io`) with
//! Google's Application Default Credentials, found in the order Google's client libraries
//! find them:
//!
//! 1. the file `GOOGLE_APPLICATION_CREDENTIALS` names;
//! 2. gcloud's file (`$CLOUDSDK_CONFIG`, or `~/.config/gcloud`,
//!    `/application_default_credentials.json`), which `gcloud auth application-default login`
//!    writes;
//! 3. the metadata server of GCE, GKE or Cloud Run (`GCE_METADATA_HOST` overrides its
//!    address), whose answers must carry `Metadata-Flavor: Google`.
//!
//! A file is a service account key (a JWT signed with its key, for the token endpoint's JWT
//! bearer grant), an `external_account` (workload identity federation: a subject token from a
//! file or a url, exchanged at Google's STS, then, when the file says so, for a service
//! account's token) or an `authorized_user` (a refresh token). The access token is the
//! registry's password for the user `oauth2accesstoken`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use futures_util::future::BoxFuture;

use super::{Endpoint, Lease, Tried, Vars, endpoint_url, field, oauth_expiry, renew_at};
use crate::secrets::{Credential, Registry, Secret, Source, SourceError};

/// The scope every token is asked for: Artifact Registry accepts no narrower one.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// A credentials file is a few kilobytes; a larger one is not one.
const MAX_FILE: u64 = 64 << 10;

pub(crate) struct Gcp;

impl Source for Gcp {
    fn credential<'a>(
        &'a self,
        _host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, SourceError>> {
        Box::pin(async { Ok(Some(lease(&Vars::from_process()).await?.credential)) })
    }

    fn lease<'a>(
        &'a self,
        _registry: Registry<'a>,
    ) -> BoxFuture<'a, Result<Option<Lease>, SourceError>> {
        Box::pin(async { Ok(Some(lease(&Vars::from_process()).await?)) })
    }

    fn identity(&self) -> BoxFuture<'_, Result<Option<String>, SourceError>> {
        Box::pin(async {
            let token = access_token(&Vars::from_process()).await?;
            Ok(Some(format!("Google credentials from {}", token.from)))
        })
    }

    fn document(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(async {
            Err(SourceError::Invalid(
                "gcp gives registry passwords, not documents: use file:, env: or exec:".into(),
            ))
        })
    }
}

/// An access token, when it expires, and where the credentials behind it were found.
pub struct Token {
    pub token: Secret,
    pub expires: SystemTime,
    pub from: String,
}

/// The registry password: the access token, for the user `oauth2accesstoken`.
pub async fn lease(vars: &Vars) -> Result<Lease, SourceError> {
    let token = access_token(vars).await?;
    Ok(Lease {
        credential: Credential::Basic {
            username: "oauth2accesstoken".into(),
            password: token.token,
        },
        renew_at: renew_at(token.expires),
    })
}

/// An access token from the first place of the chain that has credentials.
pub async fn access_token(vars: &Vars) -> Result<Token, SourceError> {
    let mut tried = Tried::default();
    match vars.get("GOOGLE_APPLICATION_CREDENTIALS") {
        Some(path) => return from_file(Path::new(path)).await,
        None => tried.note("GOOGLE_APPLICATION_CREDENTIALS", "unset"),
    }
    let gcloud = vars
        .get("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| vars.home(".config/gcloud"))
        .map(|d| d.join("application_default_credentials.json"));
    match gcloud {
        Some(path) if path.exists() => return from_file(&path).await,
        Some(path) => tried.note(&path.display().to_string(), "no such file"),
        None => tried.note("gcloud's file", "HOME unset"),
    }
    match metadata(vars).await {
        Ok(token) => Ok(token),
        Err(why) => {
            tried.note("metadata server", why);
            Err(tried.nothing(
                "Google",
                "set GOOGLE_APPLICATION_CREDENTIALS to a key or an external account file, or \
                 run on GCE, GKE or Cloud Run with a service account",
            ))
        }
    }
}

/// A token from a credentials file, by its `type`.
async fn from_file(path: &Path) -> Result<Token, SourceError> {
    let shown = path.display().to_string();
    let fail = |why: String| SourceError::Invalid(format!("{shown}: {why}"));
    let size = std::fs::metadata(path)
        .map_err(|e| SourceError::Missing(format!("{shown}: {e}")))?
        .len();
    if size > MAX_FILE {
        return Err(fail(format!("larger than {MAX_FILE} bytes")));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| SourceError::Missing(format!("{shown}: {e}")))?;
    let file: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
    let str_of = |key: &str| {
        file[key]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| fail(format!("no {key}")))
    };
    match file["type"].as_str() {
        Some("service_account") => {
            let email = str_of("client_email")?;
            let token_uri = file["token_uri"]
                .as_str()
                .unwrap_or("https://oauth2.googleapis.com/token");
            let assertion = service_account_jwt(
                email,
                str_of("private_key")?,
                file["private_key_id"].as_str(),
                token_uri,
            )
            .map_err(fail)?;
            let form = [
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ];
            let (token, expires) = oauth(token_uri, "Google's token endpoint", &form).await?;
            let from = format!("the service account key of {email} in {shown}");
            Ok(Token {
                token,
                expires,
                from,
            })
        }
        Some("external_account") => external_account(&file, &shown).await,
        Some("authorized_user") => {
            let token_uri = file["token_uri"]
                .as_str()
                .unwrap_or("https://oauth2.googleapis.com/token");
            let form = [
                ("grant_type", "refresh_token"),
                ("client_id", str_of("client_id")?),
                ("client_secret", str_of("client_secret")?),
                ("refresh_token", str_of("refresh_token")?),
            ];
            let (token, expires) = oauth(token_uri, "Google's token endpoint", &form).await?;
            let from = format!("the user credentials in {shown}");
            Ok(Token {
                token,
                expires,
                from,
            })
        }
        other => Err(fail(format!(
            "type {other:?} is not service_account, external_account or authorized_user"
        ))),
    }
}

/// The JWT a service account signs for the JWT bearer grant: itself as issuer, the token
/// endpoint as audience, an hour's life.
fn service_account_jwt(
    email: &str,
    pem: &str,
    key_id: Option<&str>,
    token_uri: &str,
) -> Result<String, String> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|_| "private_key is not an RSA key in PEM".to_string())?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = key_id.map(str::to_string);
    let now = jiff::Timestamp::now().as_second();
    let claims = serde_json::json!({
        "iss": email, "scope": SCOPE, "aud": token_uri, "iat": now, "exp": now + 3600,
    });
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("cannot sign: {e}"))
}

/// Workload identity federation: the subject token, Google's STS token exchange, and the
/// service account's token when the file names one to impersonate.
async fn external_account(file: &serde_json::Value, shown: &str) -> Result<Token, SourceError> {
    let fail = |why: String| SourceError::Invalid(format!("{shown}: {why}"));
    let str_of = |key: &str| {
        file[key]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| fail(format!("no {key}")))
    };
    let subject = subject_token(&file["credential_source"], shown).await?;
    let form = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", str_of("audience")?),
        ("scope", SCOPE),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("subject_token", subject.expose()),
        ("subject_token_type", str_of("subject_token_type")?),
    ];
    let token_url = file["token_url"]
        .as_str()
        .unwrap_or("https://sts.googleapis.com/v1/token");
    let (federated, expires) = oauth(token_url, "Google's STS", &form).await?;
    let Some(impersonate) = file["service_account_impersonation_url"].as_str() else {
        let from = format!("workload identity federation in {shown}");
        return Ok(Token {
            token: federated,
            expires,
            from,
        });
    };
    let endpoint = Endpoint::new("IAM credentials");
    let url = endpoint_url(endpoint.name, impersonate)?;
    let body = serde_json::json!({ "scope": [SCOPE], "lifetime": "3600s" });
    let answer = endpoint
        .send(
            endpoint
                .client()?
                .post(url)
                .bearer_auth(federated.expose())
                .json(&body),
        )
        .await?;
    if !answer.status.is_success() {
        return Err(answer.refusal(endpoint.name, "generateAccessToken"));
    }
    let said = answer.json(endpoint.name)?;
    let token = Secret::new(field(&said, endpoint.name, "accessToken")?);
    let expires = said["expireTime"]
        .as_str()
        .and_then(super::timestamp)
        .unwrap_or_else(|| super::expires_in(3600));
    let from = format!("workload identity federation in {shown}, as a service account");
    Ok(Token {
        token,
        expires,
        from,
    })
}

/// The subject token of an external account: a file's, or a url's (with the headers the
/// file gives), as text or as a field of JSON.
async fn subject_token(source: &serde_json::Value, shown: &str) -> Result<Secret, SourceError> {
    let text = if let Some(path) = source["file"].as_str() {
        std::fs::read_to_string(path)
            .map_err(|e| SourceError::Missing(format!("{shown}: subject token file {path}: {e}")))?
    } else if let Some(url) = source["url"].as_str() {
        let endpoint = Endpoint::metadata("the subject token url");
        let mut request = endpoint.client()?.get(endpoint_url(endpoint.name, url)?);
        if let Some(headers) = source["headers"].as_object() {
            for (name, value) in headers {
                request = request.header(name.as_str(), value.as_str().unwrap_or(""));
            }
        }
        let answer = endpoint.send(request).await?;
        if !answer.status.is_success() {
            return Err(answer.refusal(endpoint.name, "the subject token"));
        }
        String::from_utf8(answer.body)
            .map_err(|_| SourceError::Invalid(format!("{shown}: the subject token is not text")))?
    } else {
        return Err(SourceError::Invalid(format!(
            "{shown}: credential_source has neither file nor url (executable and AWS sources \
             are not read: they would run a program or sign in to another cloud)"
        )));
    };
    let token = match source["format"]["type"].as_str() {
        Some("json") => {
            let name = source["format"]["subject_token_field_name"]
                .as_str()
                .unwrap_or("access_token");
            let said: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
                SourceError::Invalid(format!("{shown}: the subject token is not JSON"))
            })?;
            said[name].as_str().map(str::to_string).ok_or_else(|| {
                SourceError::Invalid(format!("{shown}: the subject token has no {name}"))
            })?
        }
        _ => text.trim().to_string(),
    };
    Ok(Secret::new(token))
}

/// An OAuth token endpoint's exchange of `form` for an `access_token` and its expiry.
pub(super) async fn oauth(
    url: &str,
    name: &str,
    form: &[(&str, &str)],
) -> Result<(Secret, SystemTime), SourceError> {
    let endpoint = Endpoint::new(name);
    let url = endpoint_url(name, url)?;
    let answer = endpoint
        .send(endpoint.client()?.post(url).form(form))
        .await?;
    if !answer.status.is_success() {
        return Err(answer.refusal(name, "a token"));
    }
    let said = answer.json(name)?;
    let token = Secret::new(field(&said, name, "access_token")?);
    Ok((token, oauth_expiry(&said)))
}

/// The default service account's token from the metadata server.
async fn metadata(vars: &Vars) -> Result<Token, String> {
    let host = vars
        .get("GCE_METADATA_HOST")
        .unwrap_or("metadata.google.internal");
    let endpoint = Endpoint::metadata("the metadata server");
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
    let client = endpoint.client().map_err(|e| e.to_string())?;
    let answer = endpoint
        .send(client.get(url).header("metadata-flavor", "Google"))
        .await
        .map_err(|e| match e {
            SourceError::Missing(why) => why.trim_start_matches("the metadata server ").into(),
            other => other.to_string(),
        })?;
    let flavor = answer
        .headers
        .get("metadata-flavor")
        .and_then(|v| v.to_str().ok());
    if flavor != Some("Google") {
        return Err("the answer is not the metadata server's (no Metadata-Flavor: Google)".into());
    }
    if !answer.status.is_success() {
        return Err(answer.refusal(endpoint.name, "a token").to_string());
    }
    let said = answer.json(endpoint.name).map_err(|e| e.to_string())?;
    let token =
        Secret::new(field(&said, endpoint.name, "access_token").map_err(|e| e.to_string())?);
    Ok(Token {
        token,
        expires: oauth_expiry(&said),
        from: format!("the metadata server at {host}"),
    })
}
