//! Who may read the status page and who may act on it.
//!
//! Acting (hold, release, poll now) needs the daemon's control token, the one `image-updater
//! poll` reads from `control.json`; reading needs `[ui] read_token` (or the control token)
//! when one is set. A script presents the token as `Authorization: Bearer`, which a browser
//! never attaches on its own, so such a request cannot be forged by another site. A browser
//! signs in once with a form: the token buys a session, kept in memory and named by an
//! `HttpOnly`, `SameSite=Strict` cookie. Every form the page posts carries the session's CSRF
//! token, and a post whose `Origin` or `Sec-Fetch-Site` says it came from another site is
//! refused before anything else is looked at.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};

use crate::daemon::http::{bearer, same_secret};

/// The session cookie's name.
pub const COOKIE: &str = "image_updater_session";
/// How long a session lasts from sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; the oldest is forgotten beyond this.
const MAX_SESSIONS: usize = 1024;
/// The longest name a person may sign in with.
pub const MAX_NAME: usize = 64;

/// What a request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Nothing: reading needs a token and none was presented.
    None,
    /// Read the page and its JSON.
    Read,
    /// Read, and hold, release and poll, as `by`; `csrf` is what the browser's forms must
    /// carry (none for a bearer token, which a browser does not send on its own).
    Act { by: String, csrf: Option<String> },
}

impl Access {
    pub fn can_read(&self) -> bool {
        !matches!(self, Access::None)
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub name: String,
    /// Whether the session signed in with the control token.
    pub can_act: bool,
    pub csrf: String,
    expires: Instant,
}

/// The signed-in browsers.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

/// Why a sign-in or a post was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the request came from another site ({0}); sign in and act from this page")]
    CrossSite(String),
    #[error("the form's CSRF token is missing or is not this session's; reload the page")]
    Csrf,
    #[error("that token is neither the control token nor the read token")]
    WrongToken,
    #[error("sign in with the control token to act (this session may only read)")]
    ReadOnly,
    #[error("a name is 1 to {MAX_NAME} printable characters")]
    BadName,
}

pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut bytes);
    }
    crate::hex::encode(&bytes)
}

impl Sessions {
    /// A new session for `name`, returned with its id.
    pub fn open(&self, name: String, can_act: bool) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            name,
            can_act,
            csrf: random_hex(),
            expires: Instant::now() + SESSION_LIFETIME,
        };
        let mut all = self.by_id.lock().expect("sessions lock");
        let now = Instant::now();
        all.retain(|_, s| s.expires > now);
        if all.len() >= MAX_SESSIONS
            && let Some(oldest) = all
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            all.remove(&oldest);
        }
        all.insert(id.clone(), session.clone());
        (id, session)
    }

    pub fn close(&self, id: &str) {
        self.by_id.lock().expect("sessions lock").remove(id);
    }

    /// The live session the request's cookie names.
    pub fn of(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, COOKIE)?;
        let all = self.by_id.lock().expect("sessions lock");
        // Looked up by the id itself: a map's probe compares whole keys, and ids are random.
        let session = all.get(id).filter(|s| s.expires > Instant::now())?;
        Some((id.to_string(), session.clone()))
    }
}

/// The value of cookie `name` in the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The tokens of the running daemon.
pub struct Tokens<'a> {
    pub control: &'a str,
    pub read: Option<&'a str>,
}

impl Tokens<'_> {
    /// What `presented` allows: `Some(true)` acting, `Some(false)` reading only.
    pub fn judge(&self, presented: &str) -> Option<bool> {
        if same_secret(presented.as_bytes(), self.control.as_bytes()) {
            Some(true)
        } else if self
            .read
            .is_some_and(|r| same_secret(presented.as_bytes(), r.as_bytes()))
        {
            Some(false)
        } else {
            None
        }
    }

    /// What a request may do, by its bearer token or its session.
    pub fn access(&self, headers: &HeaderMap, sessions: &Sessions) -> Access {
        if let Some(token) = bearer(headers) {
            return match self.judge(token) {
                Some(true) => Access::Act {
                    by: "a control-token holder".into(),
                    csrf: None,
                },
                Some(false) => Access::Read,
                // A wrong bearer token reads nothing, even where reading is open: a script
                // with a stale token should hear so.
                None => Access::None,
            };
        }
        match sessions.of(headers) {
            Some((_, s)) if s.can_act => Access::Act {
                by: s.name,
                csrf: Some(s.csrf),
            },
            Some(_) => Access::Read,
            None if self.read.is_none() => Access::Read,
            None => Access::None,
        }
    }
}

/// Refuses a browser's post that another site made: by `Sec-Fetch-Site` where the browser
/// sends it, else by `Origin` against `Host`. A request with neither (a script, curl) passes
/// here; it still needs a token.
pub fn same_site(headers: &HeaderMap) -> Result<(), Refused> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(Refused::CrossSite(format!("Sec-Fetch-Site: {site}")));
    }
    if let Some(origin) = get("origin") {
        let host = get("host").unwrap_or_default();
        let expected = [format!("http://{host}"), format!("https://{host}")];
        if host.is_empty() || !expected.iter().any(|e| e == origin) {
            return Err(Refused::CrossSite(format!("Origin: {origin}")));
        }
    }
    Ok(())
}

/// Checks a form post's CSRF token against the session's (none to check for a bearer token).
pub fn csrf(expected: Option<&str>, presented: Option<&str>) -> Result<(), Refused> {
    match expected {
        None => Ok(()),
        Some(e) => match presented {
            Some(p) if same_secret(p.as_bytes(), e.as_bytes()) => Ok(()),
            _ => Err(Refused::Csrf),
        },
    }
}

/// A name to sign in with: printable, no markup-significant surprises once escaped, short.
pub fn name(text: &str) -> Result<String, Refused> {
    let text = text.trim();
    let ok = !text.is_empty()
        && text.chars().count() <= MAX_NAME
        && text.chars().all(|c| !c.is_control());
    ok.then(|| text.to_string()).ok_or(Refused::BadName)
}

/// The `Set-Cookie` value for session `id` (`None` clears it).
pub fn set_cookie(id: Option<&str>) -> String {
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_LIFETIME.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn posts_from_other_sites_are_refused() {
        // (headers, allowed)
        let table: &[(&[(&str, &str)], bool)] = &[
            (&[], true),
            (&[("sec-fetch-site", "same-origin")], true),
            (&[("sec-fetch-site", "none")], true),
            (&[("sec-fetch-site", "cross-site")], false),
            (&[("sec-fetch-site", "same-site")], false),
            (
                &[("origin", "http://127.0.0.1:9"), ("host", "127.0.0.1:9")],
                true,
            ),
            (
                &[("origin", "http://localhost:9"), ("host", "127.0.0.1:9")],
                false,
            ),
            (&[("origin", "null"), ("host", "127.0.0.1:9")], false),
            (&[("origin", "http://127.0.0.1:9")], false),
        ];
        for (pairs, allowed) in table {
            assert_eq!(same_site(&headers(pairs)).is_ok(), *allowed, "{pairs:?}");
        }
    }

    #[test]
    fn tokens_sessions_and_csrf() {
        let sessions = Sessions::default();
        let open = Tokens {
            control: "c0ntrol",
            read: None,
        };
        let closed = Tokens {
            control: "c0ntrol",
            read: Some("r3ad"),
        };
        assert_eq!(open.access(&HeaderMap::new(), &sessions), Access::Read);
        assert_eq!(closed.access(&HeaderMap::new(), &sessions), Access::None);
        let read = headers(&[("authorization", "Bearer r3ad")]);
        assert_eq!(closed.access(&read, &sessions), Access::Read);
        let wrong = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(open.access(&wrong, &sessions), Access::None);
        let act = headers(&[("authorization", "bearer c0ntrol")]);
        assert!(matches!(
            closed.access(&act, &sessions),
            Access::Act { csrf: None, .. }
        ));
        let (id, s) = sessions.open("ana".into(), true);
        let cookie = headers(&[("cookie", &format!("theme=dark; {COOKIE}={id}"))]);
        assert_eq!(
            closed.access(&cookie, &sessions),
            Access::Act {
                by: "ana".into(),
                csrf: Some(s.csrf.clone())
            }
        );
        assert_eq!(csrf(Some(&s.csrf), Some(&s.csrf)), Ok(()));
        assert_eq!(csrf(Some(&s.csrf), Some("x")), Err(Refused::Csrf));
        assert_eq!(csrf(Some(&s.csrf), None), Err(Refused::Csrf));
        sessions.close(&id);
        assert_eq!(closed.access(&cookie, &sessions), Access::None);
        assert_eq!(name(" ana "), Ok("ana".into()));
        assert!(name("").is_err());
        assert!(name("a\u{7}b").is_err());
        assert!(name(&"x".repeat(65)).is_err());
    }
}
