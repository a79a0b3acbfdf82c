//! What the daemon remembers across restarts, in the state dir:
//!
//! ```text
//! STATE_DIR/
//!   cache/metadata.json   what each digest is (platforms, creation time); see registry::cache
//!   git/NAME.git/         a bare mirror per repository; see writeback::git
//!   status.json           per image and environment: last check, last update, last error,
//!                         what image-updater wrote and what the branch holds, revert holds
//!   holds.json            holds and releases from `image-updater hold`/`release`
//!   seen.json             when each tag was first seen, for `min_age`
//! ```
//!
//! Every file is written to a temporary name and renamed, so a crash leaves the old file or
//! the new one. A file that cannot be read is set aside and rebuilt: the daemon never refuses
//! to start because of its own state.

use crate::private::write_atomically;
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
    /// What image-updater last pushed (`v1.5.0`, `v1.5.0@sha256:…`), the digest the chosen
    /// tag had then, and when: what promotion and revert detection go by.
    #[serde(default)]
    pub written: Option<String>,
    #[serde(default)]
    pub written_digest: Option<String>,
    /// The value the branch held at the last cycle.
    #[serde(default)]
    pub current: Option<String>,
    /// Why the candidate is not on the branch (too young, soaking, a downgrade, held).
    #[serde(default)]
    pub waiting: Option<String>,
    /// A value a person reverted: it and anything ranking below it stay out.
    #[serde(default)]
    pub held: Option<RevertHold>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertHold {
    /// The value reverted (`v1.5.0`), as image-updater wrote it.
    pub value: String,
    /// Its tag, for ranking.
    pub tag: String,
    /// What the branch held instead when the revert was noticed.
    pub found: String,
    pub since: String,
}

/// `status.json`: (image alias, environment) -> [`Status`].
///
/// Kept in memory as one map keyed by the pair: a map per image would allocate a B-tree node
/// (room for eleven entries, 4 KiB) for the one or three environments most images have, which
/// at 5,000 images was 20 MB. The file keeps the nested form, `{alias: {environment: status}}`.
#[derive(Debug)]
pub struct StatusStore {
    path: PathBuf,
    entries: Mutex<BTreeMap<(String, String), Status>>,
}

/// The file's form.
type Nested = BTreeMap<String, BTreeMap<String, Status>>;

impl StatusStore {
    /// Reads `STATE_DIR/status.json`; a missing file is an empty store, a corrupt one is moved
    /// to `status.json.corrupt` and rebuilt.
    pub fn open(state_dir: &Path) -> StatusStore {
        let path = state_dir.join("status.json");
        let nested: Nested = match std::fs::read(&path) {
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
        let entries = nested
            .into_iter()
            .flat_map(|(alias, envs)| {
                envs.into_iter()
                    .map(move |(env, status)| ((alias.clone(), env), status))
            })
            .collect();
        StatusStore {
            path,
            entries: Mutex::new(entries),
        }
    }

    pub fn get(&self, alias: &str, environment: &str) -> Status {
        let entries = self.entries.lock().expect("status lock");
        entries
            .get(&(alias.to_string(), environment.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `alias` has been checked successfully in any environment: polled before from
    /// this state dir, so the registry cache knows its tags.
    pub fn checked(&self, alias: &str) -> bool {
        let entries = self.entries.lock().expect("status lock");
        entries
            .range((alias.to_string(), String::new())..)
            .take_while(|((a, _), _)| a == alias)
            .any(|(_, status)| status.last_check.is_some())
    }

    /// Changes one entry in memory; [`save`](Self::save) writes them all.
    pub fn update(&self, alias: &str, environment: &str, f: impl FnOnce(&mut Status)) {
        let mut entries = self.entries.lock().expect("status lock");
        let key = (alias.to_string(), environment.to_string());
        f(entries.entry(key).or_default());
    }

    /// Every entry, in the file's nested form.
    pub fn all(&self) -> Nested {
        let mut nested = Nested::new();
        for ((alias, env), status) in self.entries.lock().expect("status lock").iter() {
            nested
                .entry(alias.clone())
                .or_default()
                .insert(env.clone(), status.clone());
        }
        nested
    }

    /// Writes the store atomically, serialized straight from the flat map: building the
    /// nested form first would copy every entry and allocate a B-tree node per image (20 MB at
    /// 5,000 images, every save).
    pub fn save(&self) -> std::io::Result<()> {
        let bytes = {
            let entries = self.entries.lock().expect("status lock");
            serde_json::to_vec(&AsNested(&entries)).map_err(std::io::Error::other)?
        };
        write_atomically(&self.path, &bytes)
    }
}

/// The flat map, serialized in the file's nested form: its keys are sorted by alias, so each
/// alias's environments are one run of entries.
struct AsNested<'a>(&'a BTreeMap<(String, String), Status>);

/// One alias's run of entries, as `{environment: status}`.
struct Environments<'a>(&'a [(&'a (String, String), &'a Status)]);

impl Serialize for AsNested<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let entries: Vec<_> = self.0.iter().collect();
        let mut map = serializer.serialize_map(None)?;
        for run in entries.chunk_by(|a, b| a.0.0 == b.0.0) {
            map.serialize_entry(&run[0].0.0, &Environments(run))?;
        }
        map.end()
    }
}

impl Serialize for Environments<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|((_, env), status)| (env, status)))
    }
}

/// A hold made with `image-updater hold`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualHold {
    pub since: String,
    /// RFC 3339; none means until released.
    pub until: Option<String>,
    pub reason: Option<String>,
}

impl ManualHold {
    pub fn active(&self) -> bool {
        match &self.until {
            None => true,
            Some(until) => until
                .parse::<jiff::Timestamp>()
                .map_or(true, |t| t > jiff::Timestamp::now()),
        }
    }
}

/// `holds.json`, written by the `hold` and `release` commands and read by the daemon at every
/// cycle: holds by image and environment, and revert holds a person lifted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holds {
    #[serde(default)]
    pub holds: BTreeMap<String, BTreeMap<String, ManualHold>>,
    /// (image, environment) -> a reverted value that may be deployed again.
    #[serde(default)]
    pub lifted: BTreeMap<String, BTreeMap<String, Lift>>,
}

/// A revert hold released by hand: it lifts a hold on `value` made before `at`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lift {
    pub value: String,
    pub at: String,
}

impl Lift {
    /// Whether this release covers `hold` (a later revert of the same value is held again).
    pub fn covers(&self, hold: &RevertHold) -> bool {
        let parse = |t: &str| t.parse::<jiff::Timestamp>().ok();
        self.value == hold.value
            && matches!((parse(&self.at), parse(&hold.since)), (Some(a), Some(b)) if a >= b)
    }
}

impl Holds {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("holds.json")
    }

    /// The file's holds; a missing or unreadable file holds nothing (and says so once).
    pub fn read(state_dir: &Path) -> Holds {
        match std::fs::read(Holds::path(state_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "holds.json is not valid; ignoring it until it is fixed");
                Holds::default()
            }),
            Err(_) => Holds::default(),
        }
    }

    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomically(&Holds::path(state_dir), &bytes)
    }

    pub fn active(&self, alias: &str, env: &str) -> Option<&ManualHold> {
        self.holds.get(alias)?.get(env).filter(|h| h.active())
    }
}

/// `seen.json`: when each tag of each repository was first listed, for `min_age`.
#[derive(Debug)]
pub struct FirstSeen {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, BTreeMap<String, jiff::Timestamp>>>,
}

impl FirstSeen {
    pub fn open(state_dir: &Path) -> FirstSeen {
        let path = state_dir.join("seen.json");
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        FirstSeen {
            path,
            entries: Mutex::new(entries),
        }
    }

    /// Records `tags` of `repository` as seen now unless seen before; returns the first-seen
    /// time of each.
    pub fn observe(&self, repository: &str, tags: &[String]) -> BTreeMap<String, jiff::Timestamp> {
        let now = jiff::Timestamp::now();
        let mut entries = self.entries.lock().expect("seen lock");
        let repo = entries.entry(repository.to_string()).or_default();
        tags.iter()
            .map(|t| (t.clone(), *repo.entry(t.clone()).or_insert(now)))
            .collect()
    }

    pub fn save(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&*self.entries.lock().expect("seen lock"))
            .map_err(std::io::Error::other)?;
        write_atomically(&self.path, &bytes)
    }
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
        // The file keeps the nested form.
        store.update("api", "dev", |s| s.candidate = Some("main-1".into()));
        store.update("web", "prod", |s| s.candidate = Some("2.4.0".into()));
        store.save().unwrap();
        let nested: Nested =
            serde_json::from_slice(&std::fs::read(dir.path().join("status.json")).unwrap())
                .unwrap();
        assert_eq!(nested, store.all());
        assert_eq!(nested["api"].len(), 2);
        std::fs::write(dir.path().join("status.json"), "{ not json").unwrap();
        let rebuilt = StatusStore::open(dir.path());
        assert_eq!(rebuilt.get("api", "prod"), Status::default());
        assert!(dir.path().join("status.json.corrupt").exists());
    }
}
