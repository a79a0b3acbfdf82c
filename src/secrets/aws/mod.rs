//! `aws[:REGION]`: Amazon ECR's registry password, from AWS credentials found the way AWS's
//! own tools find them, with nothing to install.
//!
//! The keys come from the first link of the chain that has them, in AWS's documented order:
//! the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then
//! the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, or `~/.aws/credentials`) under
//! the profile `AWS_PROFILE` (or `default`). With them, ECR's `GetAuthorizationToken`, signed
//! with Signature Version 4, answers a password for the user `AWS`, good for twelve hours;
//! it is kept until shortly before then. A failure says what was tried, in order.
//!
//! The endpoint is ECR's for the region (`AWS_ENDPOINT_URL_ECR` or `AWS_ENDPOINT_URL` first,
//! as AWS's SDKs allow); the password goes only to the registry it was asked for.

pub mod sigv4;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine;
use futures_util::future::BoxFuture;

use super::{Credential, Secret, Source, SourceError};
use crate::config::credentials::ecr_region;
use sigv4::{Keys, Unsigned, sign_headers};

/// How long an ECR exchange may take, answer included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// ECR's answer is a few hundred bytes; a larger one is not ECR's.
const MAX_ANSWER: usize = 64 << 10;
/// A password is asked for again this long before ECR says it expires.
const EARLY: Duration = Duration::from_secs(15 * 60);
/// The longest a password is kept, whatever the answer says (ECR's are good for 12 h).
const LONGEST: Duration = Duration::from_secs(12 * 3600);

/// A registry host and the access key id its password was asked for with.
type Asked = (String, String);

/// ECR's password for a registry host, by host and access key id, and when it is due again.
static PASSWORDS: Mutex<Option<HashMap<Asked, (Credential, SystemTime)>>> = Mutex::new(None);

pub(super) struct Aws<'a> {
    pub region: Option<&'a str>,
}

impl Source for Aws<'_> {
    fn credential<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, SourceError>> {
        Box::pin(async move {
            let region = region_of(self.region, host)?;
            let keys = keys()?;
            let cache_key = (host.to_string(), keys.access_key_id.clone());
            if let Some((credential, due)) = PASSWORDS
                .lock()
                .expect("passwords lock")
                .get_or_insert_with(HashMap::new)
                .get(&cache_key)
                && SystemTime::now() < *due
            {
                return Ok(Some(credential.clone()));
            }
            let (credential, expires) = ecr_password(&keys, &region).await?;
            let due = expires
                .checked_sub(EARLY)
                .unwrap_or(expires)
                .min(SystemTime::now() + LONGEST);
            PASSWORDS
                .lock()
                .expect("passwords lock")
                .get_or_insert_with(HashMap::new)
                .insert(cache_key, (credential.clone(), due));
            Ok(Some(credential))
        })
    }

    fn document(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(async {
            Err(SourceError::Invalid(
                "aws gives registry passwords, not keys: use file:, env: or exec:".into(),
            ))
        })
    }
}

/// The region: the one given, or the one in an ECR host
/// (`123456789012.dkr.ecr.eu-west-1.amazonaws.com`), or `AWS_REGION` / `AWS_DEFAULT_REGION`.
fn region_of(given: Option<&str>, host: &str) -> Result<String, SourceError> {
    if let Some(region) = given {
        return Ok(region.to_string());
    }
    if let Some(region) = ecr_region(host) {
        return Ok(region);
    }
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|r| !r.is_empty()))
        .ok_or_else(|| {
            SourceError::Missing(format!(
                "no AWS region: {host} is not an ECR host that names one, and neither \
                 AWS_REGION nor AWS_DEFAULT_REGION is set; write credentials = \"aws:REGION\""
            ))
        })
}

/// The AWS keys from the first link of the chain that has them; when none has, what each
/// said.
fn keys() -> Result<Keys, SourceError> {
    found().map(|(keys, _)| keys)
}

/// Where the keys would come from now, for `check`: the link, or what each link said.
pub fn keys_from() -> Result<String, String> {
    found().map(|(_, from)| from).map_err(|e| e.to_string())
}

fn found() -> Result<(Keys, String), SourceError> {
    let mut tried = Vec::new();
    match from_environment() {
        Ok(keys) => return Ok((keys, "the environment (AWS_ACCESS_KEY_ID)".into())),
        Err(why) => tried.push(format!("environment ({why})")),
    }
    match from_shared_file() {
        Ok(found) => return Ok(found),
        Err(why) => tried.push(why),
    }
    Err(SourceError::Missing(format!(
        "no AWS credentials: tried {}",
        tried.join(", ")
    )))
}

fn from_environment() -> Result<Keys, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Ok(Keys {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: var("AWS_SESSION_TOKEN").map(Secret::new),
        }),
        (Some(_), None) => Err("AWS_SECRET_ACCESS_KEY unset".into()),
        _ => Err("AWS_ACCESS_KEY_ID unset".into()),
    }
}

/// The profile's keys in the shared credentials file, read as AWS's tools read its INI form,
/// and where they were found.
fn from_shared_file() -> Result<(Keys, String), String> {
    let path = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))
        .ok_or("the shared credentials file (HOME unset)")?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let what = format!("{} profile {profile}", path.display());
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{} (no such file)", path.display()));
        }
        Err(e) => return Err(format!("{what} ({e})")),
    };
    let values = profile_values(&text, &profile);
    let get = |key: &str| {
        values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok((
            Keys {
                access_key_id: id,
                secret_access_key: Secret::new(secret),
                session_token: get("aws_session_token").map(Secret::new),
            },
            what,
        )),
        _ if values.is_empty() => Err(format!("{what} (no such profile)")),
        _ => Err(format!(
            "{what} (no aws_access_key_id and aws_secret_access_key)"
        )),
    }
}

/// The `key = value` lines of `[profile]` in an INI text.
fn profile_values(text: &str, profile: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out
}

/// ECR's endpoint for `region`, or the one the environment names.
fn ecr_endpoint(region: &str) -> String {
    ["AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("https://api.ecr.{region}.amazonaws.com"))
}

/// `GetAuthorizationToken`: the registry password for the user `AWS`, and when it expires.
async fn ecr_password(keys: &Keys, region: &str) -> Result<(Credential, SystemTime), SourceError> {
    let endpoint = ecr_endpoint(region);
    let url = reqwest::Url::parse(&endpoint)
        .map_err(|e| SourceError::Invalid(format!("ECR endpoint {endpoint}: {e}")))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => {
            return Err(SourceError::Invalid(format!(
                "ECR endpoint {endpoint} has no host"
            )));
        }
    };
    let body = b"{}";
    let fixed = [
        ("host", host.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        (
            "x-amz-target",
            "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        ),
    ];
    let signed = sign_headers(
        &Unsigned {
            method: "POST",
            url: url.as_str(),
            headers: &fixed,
            body,
        },
        keys,
        region,
        "ecr",
        SystemTime::now(),
    )
    .map_err(SourceError::Invalid)?;
    let client = reqwest::Client::builder()
        .user_agent(concat!("image-updater/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| SourceError::Missing(format!("ECR: {e}")))?;
    let mut request = client.post(url.clone()).body(body.to_vec());
    for (name, value) in fixed.iter().skip(1) {
        request = request.header(*name, *value);
    }
    for (name, value) in &signed {
        request = request.header(name.as_str(), value.as_str());
    }
    let unreachable = |e: reqwest::Error| {
        let why = if e.is_timeout() {
            format!("did not answer within {}s", TIMEOUT.as_secs())
        } else if e.is_connect() {
            "cannot be reached".to_string()
        } else {
            e.without_url().to_string()
        };
        SourceError::Missing(format!("ECR at {endpoint} {why}"))
    };
    let mut response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let mut answer = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if answer.len().saturating_add(chunk.len()) > MAX_ANSWER {
            return Err(SourceError::Invalid(format!(
                "ECR at {endpoint} answered more than {MAX_ANSWER} bytes"
            )));
        }
        answer.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        // AWS's error answers name the error (`__type`) and say why (`message`); neither
        // holds a secret.
        let said: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        let kind = said["__type"].as_str().unwrap_or("no error type");
        let message = said["message"]
            .as_str()
            .or(said["Message"].as_str())
            .unwrap_or("");
        let message: String = message.chars().take(300).collect();
        return Err(SourceError::Invalid(format!(
            "ECR refused GetAuthorizationToken (HTTP {status}, {kind}): {message}"
        )));
    }
    password_of(&answer)
}

/// The password and its expiry from `GetAuthorizationToken`'s answer.
fn password_of(answer: &[u8]) -> Result<(Credential, SystemTime), SourceError> {
    let invalid = |why: &str| SourceError::Invalid(format!("ECR's answer: {why}"));
    let said: serde_json::Value =
        serde_json::from_slice(answer).map_err(|_| invalid("not JSON"))?;
    let data = &said["authorizationData"][0];
    let token = data["authorizationToken"]
        .as_str()
        .ok_or_else(|| invalid("no authorizationToken"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| invalid("the token is not base64 of user:password"))?;
    let (user, password) = decoded
        .split_once(':')
        .filter(|(u, p)| !u.is_empty() && !p.is_empty())
        .ok_or_else(|| invalid("the token is not user:password"))?;
    // Seconds since the epoch, as a number; anything absurd is held to the longest.
    let expires = data["expiresAt"]
        .as_f64()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e11)
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s))
        .unwrap_or_else(|| SystemTime::now() + LONGEST);
    Ok((
        Credential::Basic {
            username: user.to_string(),
            password: Secret::new(password),
        },
        expires,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_as_ini() {
        let text = "[default]\naws_access_key_id = AKIDDEFAULT\n\n[ci]\n# a comment\nAWS_ACCESS_KEY_ID=AKIDCI\naws_secret_access_key = s3cret \n";
        let ci = profile_values(text, "ci");
        assert_eq!(
            ci,
            [
                ("aws_access_key_id".to_string(), "AKIDCI".to_string()),
                ("aws_secret_access_key".to_string(), "s3cret".to_string())
            ]
        );
        assert!(profile_values(text, "prod").is_empty());
    }

    #[test]
    fn ecr_answers_are_bounded_and_checked() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:pw-from-ecr");
        let answer = format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":1.7e9,"proxyEndpoint":"https://x"}}]}}"#
        );
        let (credential, expires) = password_of(answer.as_bytes()).unwrap();
        assert_eq!(
            credential,
            Credential::Basic {
                username: "AWS".into(),
                password: Secret::new("pw-from-ecr")
            }
        );
        assert_eq!(
            expires,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        // An absurd expiry is held to the longest; a token that is not user:password fails.
        let absurd = answer.replace("1.7e9", "1e300");
        let (_, expires) = password_of(absurd.as_bytes()).unwrap();
        assert!(expires <= SystemTime::now() + LONGEST);
        let bad = answer.replace(&token, "bm90LWEtcGFpcg==");
        assert!(password_of(bad.as_bytes()).is_err());
        assert!(password_of(b"<html>").is_err());
    }
}
