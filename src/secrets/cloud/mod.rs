//! Registry passwords from a cloud's own sign-in, with nothing to install: `aws`, `gcp` and
//! `azure`. Each provider finds the cloud's credentials the way that cloud's own tools find
//! them (a chain of places, in the cloud's documented order), exchanges them for the
//! registry's password, and says when that password is due again.
//!
//! What the providers share lives here: the snapshot of the environment a chain reads
//! ([`Vars`]), one bounded exchange with a cloud endpoint ([`Endpoint`]: a timeout, a cap on
//! the answer, no redirects), when a password is renewed ([`renew_at`]), and the account of
//! what a chain tried ([`Tried`]). The registry client keeps each [`Lease`] in its token
//! store, in the state dir (0600), with one renewal per registry at a time.

pub mod aws;
pub mod azure;
pub mod gcp;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::{Credential, SourceError};
use crate::bounded::{self, BodyError};

/// A registry credential and when it is due to be asked for again: a while before the cloud
/// says it expires, never later than [`LONGEST`] from now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub credential: Credential,
    pub renew_at: SystemTime,
}

/// The longest a cloud's password is kept, whatever the cloud says (ECR's last 12 hours).
pub const LONGEST: Duration = Duration::from_secs(12 * 3600);

/// When a password that expires at `expires` is asked for again: a quarter of its life
/// early, at most five minutes early, and never later than [`LONGEST`] from now. An expiry
/// in the past (or absurdly far) is held to those bounds rather than trusted.
pub fn renew_at(expires: SystemTime) -> SystemTime {
    let now = SystemTime::now();
    let life = expires.duration_since(now).unwrap_or_default().min(LONGEST);
    let early = (life / 4).min(Duration::from_secs(300));
    now + life.saturating_sub(early)
}

/// A password that expires `seconds` from now (a token endpoint's `expires_in`), bounded.
pub fn expires_in(seconds: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(seconds.min(LONGEST.as_secs()))
}

/// The environment a chain reads, taken once per exchange so that every link sees the same
/// one; tests give their own.
#[derive(Debug, Clone, Default)]
pub struct Vars(HashMap<String, String>);

impl Vars {
    pub fn from_process() -> Vars {
        Vars(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vars {
        Vars(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The variable's value when it is set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The first of `names` that is set.
    pub fn first(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.get(n))
    }

    /// `$HOME/relative`, when HOME is set.
    pub fn home(&self, relative: &str) -> Option<PathBuf> {
        self.get("HOME").map(|h| PathBuf::from(h).join(relative))
    }
}

/// What each link of a chain said, in order, for the message when none had credentials:
/// `no AWS credentials: tried env (AWS_ACCESS_KEY_ID unset), …`.
#[derive(Debug, Default)]
pub struct Tried(Vec<String>);

impl Tried {
    pub fn note(&mut self, link: &str, why: impl std::fmt::Display) {
        self.0.push(format!("{link} ({why})"));
    }

    pub fn nothing(self, cloud: &str, hint: &str) -> SourceError {
        SourceError::NothingFound(format!(
            "no {cloud} credentials: tried {}; {hint}",
            self.0.join(", ")
        ))
    }
}

/// A cloud endpoint, for one bounded exchange: what it is called in messages, how long it
/// may take, and how much it may answer.
pub struct Endpoint<'a> {
    pub name: &'a str,
    pub timeout: Duration,
    pub max_answer: usize,
    /// A link-local metadata service, asked directly: never through a proxy.
    pub direct: bool,
}

/// What an endpoint answered.
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON, or why it is not.
    pub fn json(&self, name: &str) -> Result<serde_json::Value, SourceError> {
        serde_json::from_slice(&self.body).map_err(|_| {
            SourceError::Invalid(format!("{name} answered something that is not JSON"))
        })
    }

    /// A refusal, with what an OAuth or cloud error answer says of it: its code (`error`,
    /// AWS's `__type`) and its reason (`error_description`, `message`), never more than a
    /// line.
    pub fn refusal(&self, name: &str, what: &str) -> SourceError {
        let said: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let line = |v: &serde_json::Value| {
            v.as_str().map(|s| {
                s.chars()
                    .filter(|c| !c.is_control())
                    .take(300)
                    .collect::<String>()
            })
        };
        let code = [&said["__type"], &said["error"], &said["errors"][0]["code"]]
            .into_iter()
            .find_map(line);
        let reason = [
            &said["error_description"],
            &said["error"]["message"],
            &said["errors"][0]["message"],
            &said["message"],
            &said["Message"],
        ]
        .into_iter()
        .find_map(line);
        let mut text = format!("{name} refused {what} (HTTP {}", self.status);
        if let Some(code) = code {
            text.push_str(&format!(", {code}"));
        }
        text.push(')');
        if let Some(reason) = reason {
            text.push_str(&format!(": {reason}"));
        }
        SourceError::Invalid(text)
    }
}

impl Endpoint<'_> {
    /// An endpoint's exchange: 10 seconds, 64 KiB.
    pub fn new(name: &str) -> Endpoint<'_> {
        Endpoint {
            name,
            timeout: Duration::from_secs(10),
            max_answer: 64 << 10,
            direct: false,
        }
    }

    /// A metadata service's exchange: one second, as the clouds' own SDKs give it, since on a
    /// machine that has none nothing answers at all.
    pub fn metadata(name: &str) -> Endpoint<'_> {
        Endpoint {
            timeout: Duration::from_secs(1),
            direct: true,
            ..Endpoint::new(name)
        }
    }

    /// A client that follows no redirect (a credential is never sent where the endpoint
    /// points) and gives up after the endpoint's timeout. Token endpoints are reached through
    /// the system's proxy, as the registries are; metadata services never are.
    pub fn client(&self) -> Result<reqwest::Client, SourceError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("image-updater/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.timeout);
        if self.direct {
            builder = builder.no_proxy();
        }
        builder
            .build()
            .map_err(|e| SourceError::Missing(format!("{}: {e}", self.name)))
    }

    /// Sends `request` (built on [`Endpoint::client`]) and reads at most `max_answer` bytes
    /// of its answer; a redirect is answered as it is, and is not followed.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, SourceError> {
        let unreachable = |e: reqwest::Error| {
            let why = if e.is_timeout() {
                format!("timed out after {} s", self.timeout.as_secs())
            } else if e.is_connect() {
                "cannot be reached".to_string()
            } else {
                e.without_url().to_string()
            };
            SourceError::Missing(format!("{} {why}", self.name))
        };
        let response = request.send().await.map_err(unreachable)?;
        let (status, headers) = (response.status(), response.headers().clone());
        let body = match bounded::read(response, self.max_answer).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return Err(SourceError::Invalid(format!(
                    "{} answered more than {} bytes",
                    self.name, self.max_answer
                )));
            }
            Err(BodyError::Transport(e)) => return Err(unreachable(e)),
        };
        if status.is_redirection() {
            return Err(SourceError::Invalid(format!(
                "{} answered HTTP {status}, a redirect, which is not followed",
                self.name
            )));
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// An endpoint's url as the environment or a credentials file names it, with a host.
pub fn endpoint_url(name: &str, text: &str) -> Result<reqwest::Url, SourceError> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| SourceError::Invalid(format!("{name} {text}: {e}")))?;
    if url.host_str().is_none() {
        return Err(SourceError::Invalid(format!("{name} {text} has no host")));
    }
    Ok(url)
}

/// A string field of a JSON answer, or why it is missing.
pub fn field<'a>(
    said: &'a serde_json::Value,
    name: &str,
    key: &str,
) -> Result<&'a str, SourceError> {
    said[key]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SourceError::Invalid(format!("{name}'s answer has no {key}")))
}

/// `expires_in` of an OAuth answer, a number or a numeric string, bounded; an answer
/// without one is taken to last an hour (every provider's default).
pub fn oauth_expiry(said: &serde_json::Value) -> SystemTime {
    let seconds = said["expires_in"]
        .as_u64()
        .or_else(|| said["expires_in"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(3600);
    expires_in(seconds)
}

/// An RFC 3339 time (`2026-12-07T10:00:00Z`) as a `SystemTime`, when it is one after 1970.
pub fn timestamp(text: &str) -> Option<SystemTime> {
    let seconds = text.parse::<jiff::Timestamp>().ok()?.as_second();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_renewed_early_and_within_bounds() {
        let now = SystemTime::now();
        let hour = renew_at(now + Duration::from_secs(3600));
        assert!(hour <= now + Duration::from_secs(3300 + 1));
        assert!(hour >= now + Duration::from_secs(3290));
        let short = renew_at(now + Duration::from_secs(8));
        assert!(short <= now + Duration::from_secs(7) && short >= now + Duration::from_secs(5));
        assert!(renew_at(now - Duration::from_secs(10)) <= SystemTime::now());
        assert!(
            renew_at(now + Duration::from_secs(u32::MAX.into()))
                <= now + LONGEST + Duration::from_secs(1)
        );
    }
}
