//! `requests.json`: the pull (merge) request open for each environment, and what it proposes.
//!
//! The forge knows the request; only image-updater knows which values it proposed, so that a
//! request merged by a person counts as those values written, and one closed without merging
//! holds them back like a revert. Written at every change (they are rare), not on the
//! periodic save, so a crash cannot forget a request the forge still has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::private::write_json_atomically;

/// One environment's open request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRequest {
    /// GitHub's and Gitea's number, GitLab's iid.
    pub number: u64,
    pub url: String,
    /// `pull request` or `merge request`.
    pub noun: String,
    /// The update branch and the commit image-updater left it at.
    pub branch: String,
    pub head: String,
    /// By alias: the value proposed (`v1.5.0`, `v1.5.0@sha256:…`) and the tag's digest.
    pub proposed: BTreeMap<String, Proposal>,
    /// The request's title and body as last sent, so an unchanged request is not edited.
    pub text_hash: String,
    /// The head a merge was asked for (auto-merge), so it is asked once per head.
    #[serde(default)]
    pub merge_asked: Option<String>,
    /// Why the forge refused to request the reviews last asked for; asked again each cycle
    /// until it accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviews_refused: Option<String>,
    pub opened_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub value: String,
    /// What the file held when it was proposed.
    pub old: String,
    #[serde(default)]
    pub digest: Option<String>,
}

impl OpenRequest {
    /// `pull request #3`, `merge request !3`.
    pub fn name(&self) -> String {
        let sign = if self.noun == "merge request" {
            '!'
        } else {
            '#'
        };
        format!("{} {sign}{}", self.noun, self.number)
    }
}

#[derive(Debug)]
pub struct RequestStore {
    path: PathBuf,
    /// By environment.
    entries: Mutex<BTreeMap<String, OpenRequest>>,
}

impl RequestStore {
    /// Reads `STATE_DIR/requests.json`; a missing file is an empty store, a corrupt one is
    /// set aside as `requests.json.corrupt` (the open requests are found again on the forge).
    pub fn open(state_dir: &Path) -> RequestStore {
        let path = state_dir.join("requests.json");
        let entries = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                let aside = path.with_extension("json.corrupt");
                tracing::warn!(file = %path.display(), error = %e, moved_to = %aside.display(), "requests file is corrupt; open requests will be looked up on the forge");
                let _ = std::fs::rename(&path, &aside);
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        RequestStore {
            path,
            entries: Mutex::new(entries),
        }
    }

    pub fn get(&self, environment: &str) -> Option<OpenRequest> {
        self.entries
            .lock()
            .expect("requests lock")
            .get(environment)
            .cloned()
    }

    /// Sets (or with `None` forgets) an environment's request, and saves.
    pub fn set(&self, environment: &str, request: Option<OpenRequest>) {
        {
            let mut entries = self.entries.lock().expect("requests lock");
            match request {
                Some(r) => entries.insert(environment.to_string(), r),
                None => entries.remove(environment),
            };
        }
        if let Err(e) = self.save() {
            tracing::warn!(error = %e, "cannot save requests.json");
        }
    }

    pub fn save(&self) -> std::io::Result<()> {
        write_json_atomically(&self.path, |w| {
            let entries = self.entries.lock().expect("requests lock");
            serde_json::to_writer_pretty(w, &*entries)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_saved_at_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = RequestStore::open(dir.path());
        let request = OpenRequest {
            number: 7,
            url: "https://git.example.com/acme/deploy/pulls/7".into(),
            noun: "pull request".into(),
            branch: "image-updater/prod".into(),
            head: "a".repeat(40),
            proposed: BTreeMap::from([(
                "api".into(),
                Proposal {
                    value: "v1.5.0".into(),
                    old: "v1.4.0".into(),
                    digest: None,
                },
            )]),
            ..OpenRequest::default()
        };
        store.set("prod", Some(request.clone()));
        assert_eq!(RequestStore::open(dir.path()).get("prod"), Some(request));
        store.set("prod", None);
        assert_eq!(RequestStore::open(dir.path()).get("prod"), None);
        std::fs::write(dir.path().join("requests.json"), "{not json").unwrap();
        assert_eq!(RequestStore::open(dir.path()).get("prod"), None);
        assert!(dir.path().join("requests.json.corrupt").exists());
    }
}
