//! What the daemon remembers across restarts, in the state dir:
//!
//! ```text
//! STATE_DIR/
//!   cache/metadata.json   what each digest is (platforms, creation time); see registry::cache
//!   git/NAME.git/         a bare mirror per repository; see writeback::git
//!   status.json           per image and environment: last check, last update, last error
//! ```
//!
//! Every file is written to a temporary name and renamed, so a crash leaves the old file or
//! the new one. A file that cannot be read is set aside and rebuilt: the daemon never refuses
//! to start because of its own state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The latest news of one image in one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// When the registry was last polled successfully for this image (RFC 3339).
    pub last_check: Option<String>,
    /// The tag the policy chose at the last check.
    pub candidate: Option<String>,
    /// The last change written: `v1.4.0 -> v1.5.0`, its commit, and when.
    pub last_update: Option<String>,
    pub last_commit: Option<String>,
    pub last_update_at: Option<String>,
    /// The last failure, cleared by a successful check and write.
    pub last_error: Option<String>,
}

/// `status.json`: (image alias, environment) -> [`Status`].
#[derive(Debug)]
pub struct StatusStore {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, BTreeMap<String, Status>>>,
}

impl StatusStore {
    /// Reads `STATE_DIR/status.json`; a missing file is an empty store, a corrupt one is moved
    /// to `status.json.corrupt` and rebuilt.
    pub fn open(state_dir: &Path) -> StatusStore {
        let path = state_dir.join("status.json");
        let entries = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(entries) => entries,
                Err(e) => {
                    let aside = path.with_extension("json.corrupt");
                    tracing::warn!(file = %path.display(), error = %e, moved_to = %aside.display(), "status file is corrupt; starting a new one");
                    let _ = std::fs::rename(&path, &aside);
                    BTreeMap::new()
                }
            },
            Err(_) => BTreeMap::new(),
        };
        StatusStore {
            path,
            entries: Mutex::new(entries),
        }
    }

    pub fn get(&self, alias: &str, environment: &str) -> Status {
        let entries = self.entries.lock().expect("status lock");
        entries
            .get(alias)
            .and_then(|e| e.get(environment))
            .cloned()
            .unwrap_or_default()
    }

    /// Changes one entry in memory; [`save`](Self::save) writes them all.
    pub fn update(&self, alias: &str, environment: &str, f: impl FnOnce(&mut Status)) {
        let mut entries = self.entries.lock().expect("status lock");
        f(entries
            .entry(alias.to_string())
            .or_default()
            .entry(environment.to_string())
            .or_default());
    }

    pub fn all(&self) -> BTreeMap<String, BTreeMap<String, Status>> {
        self.entries.lock().expect("status lock").clone()
    }

    /// Writes the store atomically.
    pub fn save(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&*self.entries.lock().expect("status lock"))
            .map_err(std::io::Error::other)?;
        write_atomically(&self.path, &bytes)
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Now, as RFC 3339 in UTC, for status entries.
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_and_rebuilds_when_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = StatusStore::open(dir.path());
        store.update("api", "prod", |s| s.candidate = Some("v1.5.0".into()));
        store.save().unwrap();
        let again = StatusStore::open(dir.path());
        assert_eq!(
            again.get("api", "prod").candidate.as_deref(),
            Some("v1.5.0")
        );
        std::fs::write(dir.path().join("status.json"), "{ not json").unwrap();
        let rebuilt = StatusStore::open(dir.path());
        assert_eq!(rebuilt.get("api", "prod"), Status::default());
        assert!(dir.path().join("status.json.corrupt").exists());
    }
}
