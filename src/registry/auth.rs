//! The registry auth handshake: `WWW-Authenticate` challenges and bearer tokens.
//!
//! Registries answer an unauthenticated request with 401 and a challenge. A `Basic` challenge
//! wants the credentials on every request; a `Bearer` challenge names a token service (`realm`)
//! that trades credentials, or nothing for anonymous pulls, for a short-lived token. Tokens are
//! cached per scope until shortly before they expire, so a steady poll cycle asks for none.

// Numbers here come from registries, webhook senders and clocks: no arithmetic that can
// overflow or panic; every operation is checked or saturating.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header
            .split_once(char::is_whitespace)
            .unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    }
}

/// `key="value", key=value` pairs; quoted values may contain commas and escaped quotes.
fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            return out;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

/// A token service's answer.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// The longest a token is reused, whatever `expires_in` says.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: crate::secrets::Secret,
    pub refresh_at: Instant,
}

impl TokenResponse {
    /// The token, valid until a margin before its expiry. The spec's default lifetime is 60
    /// seconds when the service does not say; a lifetime above [`MAX_TOKEN_LIFETIME`] is taken
    /// as that (a token service's number is not trusted to keep a token for ever).
    pub fn into_token(self, now: Instant) -> Option<Token> {
        let value = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        let lifetime = Duration::from_secs(
            self.expires_in
                .unwrap_or(60)
                .clamp(1, MAX_TOKEN_LIFETIME.as_secs()),
        );
        let margin = lifetime
            .checked_div(10)
            .unwrap_or_default()
            .min(Duration::from_secs(30));
        Some(Token {
            value: crate::secrets::Secret::new(value),
            refresh_at: now
                .checked_add(lifetime.saturating_sub(margin))
                .unwrap_or(now),
        })
    }
}

/// The scope a pull of `repository` needs.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull,push".into()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate"), None);
        let unquoted =
            Challenge::parse("bearer realm=http://127.0.0.1:1/token, service=reg").unwrap();
        assert!(
            matches!(unquoted, Challenge::Bearer { realm, service: Some(s), .. } if realm == "http://127.0.0.1:1/token" && s == "reg")
        );
    }

    #[test]
    fn tokens_expire_with_a_margin() {
        let now = Instant::now();
        let t = TokenResponse {
            token: None,
            access_token: Some("x".into()),
            expires_in: Some(300),
        }
        .into_token(now)
        .unwrap();
        assert_eq!(t.refresh_at - now, Duration::from_secs(270));
        let d = TokenResponse {
            token: Some("y".into()),
            access_token: None,
            expires_in: None,
        }
        .into_token(now)
        .unwrap();
        assert_eq!(d.refresh_at - now, Duration::from_secs(54));
        assert!(
            TokenResponse {
                token: Some(String::new()),
                access_token: None,
                expires_in: None
            }
            .into_token(now)
            .is_none()
        );
    }
}
