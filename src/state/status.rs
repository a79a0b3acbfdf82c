//! `status.json`: per image and environment, the latest news.
//!
//! Kept in memory [`ByImage`]: a short vector of environments per alias. The file keeps the
//! nested form, `{alias: {environment: status}}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize, Serializer};

use crate::private::write_json_atomically;
use crate::state::by_image::{self, ByImage};

/// The latest news of one image in one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// When the registry was last polled successfully for this image (RFC 3339 in the file).
    pub last_check: Option<jiff::Timestamp>,
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
    /// Newer tags the `verify` rules kept out, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified: Option<String>,
    /// A value a person reverted: it and anything ranking below it stay out. Boxed: rare,
    /// and four strings wide.
    #[serde(default)]
    pub held: Option<Box<RevertHold>>,
    /// The pull request the candidate is proposed in, while it is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The last [`MAX_WRITES`] writes, newest first, for the status page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<Write>,
}

/// How many writes each image and environment remembers.
pub const MAX_WRITES: usize = 5;

/// One write: a commit pushed, or a pull request merged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    pub at: String,
    /// `v1.4.0 -> v1.5.0`.
    pub change: String,
    pub commit: String,
    /// The pull request it was merged through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

impl Status {
    /// A copy without the history of writes. Every field is named, so a field added to
    /// `Status` cannot be left out of the copy unnoticed.
    fn clone_without_writes(s: &Status) -> Status {
        let Status {
            last_check,
            candidate,
            last_update,
            last_commit,
            last_update_at,
            last_error,
            written,
            written_digest,
            current,
            waiting,
            unverified,
            held,
            request,
            writes: _,
        } = s;
        Status {
            last_check: *last_check,
            candidate: candidate.clone(),
            last_update: last_update.clone(),
            last_commit: last_commit.clone(),
            last_update_at: last_update_at.clone(),
            last_error: last_error.clone(),
            written: written.clone(),
            written_digest: written_digest.clone(),
            current: current.clone(),
            waiting: waiting.clone(),
            unverified: unverified.clone(),
            held: held.clone(),
            request: request.clone(),
            writes: Vec::new(),
        }
    }

    /// Remembers a write of `change` in `commit`: the last update, and the history.
    pub fn wrote(&mut self, change: String, commit: String, request: Option<String>) {
        let at = super::now();
        self.writes.insert(
            0,
            Write {
                at: at.clone(),
                change: change.clone(),
                commit: commit.clone(),
                request,
            },
        );
        self.writes.truncate(MAX_WRITES);
        self.last_update = Some(change);
        self.last_commit = Some(commit);
        self.last_update_at = Some(at);
    }
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
    /// The request a person closed without merging, when that is what holds the value: the
    /// same request reopened lifts the hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
}

/// One image's environments, sorted by name.
type Environments = Vec<(Box<str>, Status)>;

/// The file's form.
type Nested = BTreeMap<String, BTreeMap<String, Status>>;

#[derive(Debug)]
pub struct StatusStore {
    path: PathBuf,
    entries: Mutex<ByImage<Status>>,
    /// Bumped by every change, so a reader can tell cheaply whether anything changed.
    version: std::sync::atomic::AtomicU64,
}

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
            .map(|(alias, envs)| {
                let envs: Environments = envs.into_iter().map(|(e, s)| (e.into(), s)).collect();
                (alias.into(), envs)
            })
            .collect();
        StatusStore {
            path,
            entries: Mutex::new(entries),
            version: Default::default(),
        }
    }

    pub fn get(&self, alias: &str, environment: &str) -> Status {
        let entries = self.entries.lock().expect("status lock");
        by_image::get(&entries, alias, environment)
            .cloned()
            .unwrap_or_default()
    }

    /// [`get`](Self::get) without the history of writes: what a table of many rows reads.
    pub fn get_brief(&self, alias: &str, environment: &str) -> Status {
        let entries = self.entries.lock().expect("status lock");
        by_image::get(&entries, alias, environment)
            .map(Status::clone_without_writes)
            .unwrap_or_default()
    }

    /// Whether `alias` has been checked successfully in any environment: polled before from
    /// this state dir, so the registry cache knows its tags.
    pub fn checked(&self, alias: &str) -> bool {
        let entries = self.entries.lock().expect("status lock");
        entries
            .get(alias)
            .is_some_and(|envs| envs.iter().any(|(_, s)| s.last_check.is_some()))
    }

    /// Changes one entry in memory; [`save`](Self::save) writes them all.
    pub fn update(&self, alias: &str, environment: &str, f: impl FnOnce(&mut Status)) {
        let mut entries = self.entries.lock().expect("status lock");
        f(by_image::entry(&mut entries, alias, environment));
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A number that changes whenever an entry does.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One image's entries, by environment.
    pub fn environments(&self, alias: &str) -> BTreeMap<String, Status> {
        let entries = self.entries.lock().expect("status lock");
        entries.get(alias).map_or_else(BTreeMap::new, |envs| {
            envs.iter()
                .map(|(e, s)| (e.to_string(), s.clone()))
                .collect()
        })
    }

    /// Every entry, in the file's nested form.
    pub fn all(&self) -> Nested {
        let entries = self.entries.lock().expect("status lock");
        entries
            .iter()
            .map(|(alias, envs)| {
                let envs = envs
                    .iter()
                    .map(|(e, s)| (e.to_string(), s.clone()))
                    .collect();
                (alias.to_string(), envs)
            })
            .collect()
    }

    /// Writes the store atomically, serialized straight from the live map to the file:
    /// building the nested form first would copy every entry (20 MB at 5,000 images, every
    /// save), and even the text is megabytes at 20,000.
    pub fn save(&self) -> std::io::Result<()> {
        write_json_atomically(&self.path, |w| {
            let entries = self.entries.lock().expect("status lock");
            serde_json::to_writer(w, &AsNested(&entries))
        })
    }
}

/// The live map, serialized in the file's nested form.
struct AsNested<'a>(&'a ByImage<Status>);

/// One alias's environments, as `{environment: status}`.
struct AsMap<'a>(&'a Environments);

impl Serialize for AsNested<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(alias, envs)| (alias, AsMap(envs))))
    }
}

impl Serialize for AsMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(env, status)| (env, status)))
    }
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
        assert!(!again.checked("api"));
        // The file keeps the nested form; environments are found whatever their order.
        store.update("api", "dev", |s| s.candidate = Some("main-1".into()));
        store.update("web", "prod", |s| {
            s.last_check = Some(jiff::Timestamp::UNIX_EPOCH)
        });
        store.update("api", "staging", |s| s.candidate = Some("v1.4.0".into()));
        store.save().unwrap();
        let nested: Nested =
            serde_json::from_slice(&std::fs::read(dir.path().join("status.json")).unwrap())
                .unwrap();
        assert_eq!(nested, store.all());
        assert_eq!(nested["api"].len(), 3);
        // No room kept for environments an image does not have.
        for envs in store.entries.lock().unwrap().values() {
            assert_eq!(envs.capacity(), envs.len());
        }
        assert_eq!(
            store.get("api", "staging").candidate.as_deref(),
            Some("v1.4.0")
        );
        let text = std::fs::read_to_string(dir.path().join("status.json")).unwrap();
        assert!(
            text.contains(r#""last_check":"1970-01-01T00:00:00Z""#),
            "{text}"
        );
        assert!(StatusStore::open(dir.path()).checked("web"));
        std::fs::write(dir.path().join("status.json"), "{ not json").unwrap();
        let rebuilt = StatusStore::open(dir.path());
        assert_eq!(rebuilt.get("api", "prod"), Status::default());
        assert!(dir.path().join("status.json.corrupt").exists());
    }

    #[test]
    fn reads_a_file_written_before_checks_were_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("status.json"),
            r#"{"api":{"prod":{"last_check":"2026-11-30T10:00:00.5+00:00","candidate":"v1","last_update":null,"last_commit":null,"last_update_at":null,"last_error":null,"held":{"value":"v2","tag":"v2","found":"v1","since":"2026-11-30T10:00:00Z"}}}}"#,
        )
        .unwrap();
        let store = StatusStore::open(dir.path());
        let s = store.get("api", "prod");
        assert_eq!(
            s.last_check.map(|t| t.to_string()).as_deref(),
            Some("2026-11-30T10:00:00.5Z")
        );
        assert_eq!(s.held.unwrap().value, "v2");
        assert!(!dir.path().join("status.json.corrupt").exists());
    }
}
