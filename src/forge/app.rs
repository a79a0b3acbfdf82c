//! GitHub App installation tokens: a JWT signed with the app's private key (RS256, issued a
//! minute in the past against clock drift, valid under GitHub's 10-minute limit) is traded
//! for an installation token, which is kept until five minutes before it expires.
//!
//! The expiry GitHub gives is bounded: a token is never kept longer than an hour, whatever
//! the answer says.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::ForgeError;
use super::http::{Api, Auth, segment};
use crate::config::CredentialRef;
use crate::secrets;

/// Renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);
/// Kept at most this long, whatever the answer says.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

pub struct Installation {
    app_id: u64,
    private_key: CredentialRef,
    installation_id: Mutex<Option<u64>>,
    token: Mutex<Option<(String, jiff::Timestamp)>>,
}

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: String,
    expires_at: Option<String>,
}

#[derive(Deserialize)]
struct InstallationAnswer {
    id: u64,
}

impl Installation {
    pub fn new(app_id: u64, private_key: CredentialRef, installation_id: Option<u64>) -> Self {
        Installation {
            app_id,
            private_key,
            installation_id: Mutex::new(installation_id),
            token: Mutex::new(None),
        }
    }

    /// An installation token, renewed when it is close to expiring.
    pub async fn token(&self, api: &Api, project: &str) -> Result<String, ForgeError> {
        let mut kept = self.token.lock().await;
        let now = jiff::Timestamp::now();
        if let Some((token, expires)) = &*kept
            && now
                .checked_add(jiff::SignedDuration::try_from(RENEW_BEFORE).unwrap_or_default())
                .is_ok_and(|soon| soon < *expires)
        {
            return Ok(token.clone());
        }
        let jwt = self.jwt().await?;
        let installation = self.installation(api, &jwt, project).await?;
        let url = api.url(&format!("/app/installations/{installation}/access_tokens"))?;
        let what = "making a GitHub App installation token";
        let reply = api.send(Method::POST, url, Some(&jwt), None).await?;
        if reply.status.as_u16() != 201 {
            return Err(ForgeError::refused(what, &reply));
        }
        let answer: TokenAnswer = reply.json(what)?;
        if answer.token.is_empty()
            || answer.token.len() > 1024
            || !answer.token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ForgeError::Invalid {
                what: what.into(),
                reason: "the token is empty, too long or not printable".into(),
            });
        }
        let longest = now
            .checked_add(jiff::SignedDuration::try_from(MAX_LIFETIME).unwrap_or_default())
            .unwrap_or(now);
        let expires = answer
            .expires_at
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map_or(longest, |t| t.min(longest));
        *kept = Some((answer.token.clone(), expires));
        Ok(answer.token)
    }

    /// The installation's id: given in the config, or the one installed on the repository.
    async fn installation(&self, api: &Api, jwt: &Auth, project: &str) -> Result<u64, ForgeError> {
        let mut id = self.installation_id.lock().await;
        if let Some(id) = *id {
            return Ok(id);
        }
        let (owner, name) = project.split_once('/').unwrap_or((project, ""));
        let url = api.url(&format!(
            "/repos/{}/{}/installation",
            segment(owner),
            segment(name)
        ))?;
        let what = "finding the GitHub App's installation on the repository";
        let reply = api.send(Method::GET, url, Some(jwt), None).await?;
        if !reply.status.is_success() {
            return Err(ForgeError::refused(what, &reply));
        }
        let answer: InstallationAnswer = reply.json(what)?;
        *id = Some(answer.id);
        Ok(answer.id)
    }

    /// The app's JWT, signed with its private key (read from its source each time).
    async fn jwt(&self) -> Result<Auth, ForgeError> {
        // A PEM key is read as its source holds it: it is not a `user:password` line.
        let pem = secrets::read_document(&self.private_key)
            .await
            .map_err(|e| ForgeError::Credentials(e.to_string()))?;
        let pem = pem.expose();
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
            ForgeError::Credentials(format!(
                "{}: not an RSA private key in PEM: {e}",
                self.private_key
            ))
        })?;
        let now = jiff::Timestamp::now().as_second();
        let claims = Claims {
            iat: now.saturating_sub(60),
            exp: now.saturating_add(540),
            iss: self.app_id.to_string(),
        };
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .map_err(|e| ForgeError::Credentials(format!("signing the app's JWT: {e}")))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {jwt}"))
            .map_err(|_| ForgeError::Credentials("the JWT is not a header value".into()))?;
        value.set_sensitive(true);
        Ok(Auth {
            name: AUTHORIZATION,
            value,
        })
    }
}
