//! Bearer tokens for registry scopes, shared by every request and kept until they expire.
//!
//! A token service is asked once per scope while a token is valid: callers that find no
//! token wait for the one refresh in flight instead of each fetching their own, and tokens
//! are saved in the state dir (0600) so that `once` run from cron, or a restarted daemon,
//! reuses them instead of asking again. Tokens are keyed by the registry's origin and the
//! scope, so a token is only ever sent back to the registry it came from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::auth::{MAX_TOKEN_LIFETIME, Token};
use crate::secrets::Secret;

/// Tokens kept at most, against a config with very many repositories.
const MAX_TOKENS: usize = 100_000;
const VERSION: u32 = 1;

#[derive(Default)]
pub struct TokenStore {
    path: Option<PathBuf>,
    tokens: Mutex<HashMap<String, Token>>,
    /// One refresh per key at a time.
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    dirty: AtomicBool,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    tokens: HashMap<String, Saved>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    token: String,
    /// Unix seconds after which the token is not used.
    refresh_at: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenStore {
    pub fn in_memory() -> TokenStore {
        TokenStore::default()
    }

    /// Loads the still valid tokens of `path`; an unreadable file starts an empty store (and
    /// is replaced at the next save), never an error.
    pub fn open(path: &Path) -> TokenStore {
        let (now, unix) = (Instant::now(), unix_now());
        let tokens = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<File>(&bytes).ok())
            .filter(|file| file.version == VERSION)
            .map(|file| {
                file.tokens
                    .into_iter()
                    .take(MAX_TOKENS)
                    .filter_map(|(key, saved)| {
                        // A file's number is bounded like a token service's.
                        let left = Duration::from_secs(saved.refresh_at.checked_sub(unix)?)
                            .min(MAX_TOKEN_LIFETIME);
                        let token = Token {
                            value: Secret::new(saved.token),
                            refresh_at: now.checked_add(left)?,
                        };
                        Some((key, token))
                    })
                    .collect()
            })
            .unwrap_or_default();
        TokenStore {
            path: Some(path.to_path_buf()),
            tokens: Mutex::new(tokens),
            ..TokenStore::default()
        }
    }

    /// The key of `scope` at the registry whose API is at `base_url`.
    pub fn key(base_url: &str, scope: &str) -> String {
        format!("{base_url} {scope}")
    }

    /// The token for `key` while it is valid.
    pub fn get(&self, key: &str) -> Option<Secret> {
        let mut tokens = self.tokens.lock().expect("tokens lock");
        match tokens.get(key) {
            Some(t) if t.refresh_at > Instant::now() => Some(t.value.clone()),
            Some(_) => {
                tokens.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: &str, token: Token) {
        let mut tokens = self.tokens.lock().expect("tokens lock");
        if tokens.len() >= MAX_TOKENS {
            let now = Instant::now();
            tokens.retain(|_, t| t.refresh_at > now);
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(key.to_string(), token);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Drops `key`'s token if it is still `value` (the registry refused it); a token another
    /// caller fetched meanwhile stays.
    pub fn forget(&self, key: &str, value: &str) {
        let mut tokens = self.tokens.lock().expect("tokens lock");
        if tokens.get(key).is_some_and(|t| t.value.expose() == value) {
            tokens.remove(key);
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Drops `key`'s token, whatever it is.
    pub fn remove(&self, key: &str) {
        if self
            .tokens
            .lock()
            .expect("tokens lock")
            .remove(key)
            .is_some()
        {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Held while fetching `key`'s token: a second caller waits, then finds the token.
    pub async fn refreshing(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .refreshing
            .lock()
            .expect("refresh lock")
            .entry(key.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Writes the valid tokens if any changed, 0600, atomically.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let (now, unix) = (Instant::now(), unix_now());
        let tokens = self
            .tokens
            .lock()
            .expect("tokens lock")
            .iter()
            .filter(|(_, t)| t.refresh_at > now)
            .map(|(key, t)| {
                let left = t.refresh_at.saturating_duration_since(now).as_secs();
                let saved = Saved {
                    token: t.value.expose().to_string(),
                    refresh_at: unix.saturating_add(left),
                };
                (key.clone(), saved)
            })
            .collect();
        let bytes = serde_json::to_vec(&File {
            version: VERSION,
            tokens,
        })
        .map_err(std::io::Error::other)?;
        crate::private::write_atomically(path, &bytes)
            .inspect_err(|_| self.dirty.store(true, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(value: &str, valid_for: Duration) -> Token {
        Token {
            value: Secret::new(value),
            refresh_at: Instant::now() + valid_for,
        }
    }

    #[test]
    fn valid_tokens_survive_a_restart_and_expired_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/tokens.json");
        let store = TokenStore::open(&path);
        store.insert("a", token("t-a", Duration::from_secs(600)));
        store.insert("b", token("t-b", Duration::from_secs(600)));
        store.forget("b", "t-b");
        store.forget("a", "someone else's");
        store.save().unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let again = TokenStore::open(&path);
        assert_eq!(
            again.get("a").map(|s| s.expose().to_string()),
            Some("t-a".into())
        );
        assert!(again.get("b").is_none());
        // A file that says a token lives for ever is believed for an hour at most, and a
        // token past its time is gone.
        std::fs::write(
            &path,
            format!(
                r#"{{"version":1,"tokens":{{"x":{{"token":"t-x","refresh_at":{}}},"y":{{"token":"t-y","refresh_at":1}}}}}}"#,
                u64::MAX
            ),
        )
        .unwrap();
        let capped = TokenStore::open(&path);
        assert!(capped.get("x").is_some());
        assert!(capped.get("y").is_none());
        let left = capped.tokens.lock().unwrap()["x"]
            .refresh_at
            .duration_since(Instant::now());
        assert!(left <= MAX_TOKEN_LIFETIME);
        std::fs::write(&path, "not json").unwrap();
        assert!(TokenStore::open(&path).get("x").is_none());
    }
}
