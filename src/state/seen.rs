//! `seen.json`: when each tag of each repository was first listed, for `min_age`.
//!
//! Every image's repository is recorded, whether or not it sets `min_age` today, so that a
//! `min_age` added later counts from the first sighting rather than from the reload. Kept as
//! one sorted vector per repository: a B-tree per repository would allocate a node with room
//! for eleven tags for the three or four most repositories have. A tag no longer listed is
//! forgotten, so the file follows the registry and a tag deleted and pushed again counts as new.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use serde::ser::{SerializeMap, Serializer};

use crate::private::write_json_atomically;

/// One repository's tags, sorted, each with when it was first listed.
type Tags = Vec<(Box<str>, Timestamp)>;

/// The file's form: `{repository: {tag: first seen}}`.
type Nested = BTreeMap<String, BTreeMap<String, Timestamp>>;

#[derive(Debug)]
pub struct FirstSeen {
    path: PathBuf,
    entries: Mutex<BTreeMap<Box<str>, Tags>>,
}

/// When each tag of one repository was first listed: what `min_age` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sightings(Tags);

impl Sightings {
    pub fn get(&self, tag: &str) -> Option<Timestamp> {
        self.0
            .binary_search_by(|(t, _)| t.as_ref().cmp(tag))
            .ok()
            .map(|i| self.0[i].1)
    }

    /// Every tag with when it was first listed, by tag.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Timestamp)> {
        self.0.iter().map(|(t, at)| (t.as_ref(), *at))
    }
}

impl FirstSeen {
    /// Reads `STATE_DIR/seen.json`; a missing or unreadable file starts empty (ages then
    /// count from now, the safe side of `min_age`).
    pub fn open(state_dir: &Path) -> FirstSeen {
        let path = state_dir.join("seen.json");
        let nested: Nested = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let entries = nested
            .into_iter()
            .map(|(repo, tags)| {
                let tags: Tags = tags.into_iter().map(|(t, at)| (t.into(), at)).collect();
                (repo.into(), tags)
            })
            .collect();
        FirstSeen {
            path,
            entries: Mutex::new(entries),
        }
    }

    /// Records the tags `repository` lists now: a tag not listed before is first seen now, a
    /// tag no longer listed is forgotten.
    pub fn observe(&self, repository: &str, tags: &[String]) {
        let mut listed: Vec<&str> = tags.iter().map(String::as_str).collect();
        listed.sort_unstable();
        listed.dedup();
        let mut entries = self.entries.lock().expect("seen lock");
        let known = entries.entry(repository.into()).or_default();
        if known.len() == listed.len() && known.iter().zip(&listed).all(|((k, _), l)| **k == **l) {
            return;
        }
        let now = Timestamp::now();
        let mut old = std::mem::take(known).into_iter().peekable();
        let mut merged = Tags::with_capacity(listed.len());
        for tag in listed {
            while old.next_if(|(k, _)| k.as_ref() < tag).is_some() {}
            match old.next_if(|(k, _)| k.as_ref() == tag) {
                Some(kept) => merged.push(kept),
                None => merged.push((tag.into(), now)),
            }
        }
        *known = merged;
    }

    /// Takes first sightings another replica recorded: a tag keeps the earlier of the two
    /// times, and one not known here is added (it is forgotten at the next listing if the
    /// registry no longer lists it).
    pub fn adopt(&self, repository: &str, recorded: impl IntoIterator<Item = (String, Timestamp)>) {
        let mut entries = self.entries.lock().expect("seen lock");
        let known = entries.entry(repository.into()).or_default();
        let mut merged: BTreeMap<Box<str>, Timestamp> = std::mem::take(known).into_iter().collect();
        for (tag, at) in recorded {
            merged
                .entry(tag.into())
                .and_modify(|t| *t = (*t).min(at))
                .or_insert(at);
        }
        *known = merged.into_iter().collect();
    }

    /// When each tag of `repository` was first listed.
    pub fn sightings(&self, repository: &str) -> Sightings {
        let entries = self.entries.lock().expect("seen lock");
        Sightings(entries.get(repository).cloned().unwrap_or_default())
    }

    pub fn save(&self) -> std::io::Result<()> {
        write_json_atomically(&self.path, |w| {
            let entries = self.entries.lock().expect("seen lock");
            serde_json::to_writer(w, &AsNested(&entries))
        })
    }
}

/// The live map written in the file's nested form, without a copy.
struct AsNested<'a>(&'a BTreeMap<Box<str>, Tags>);

struct TagsAsMap<'a>(&'a Tags);

impl serde::Serialize for AsNested<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (repo, tags) in self.0 {
            map.serialize_entry(repo, &TagsAsMap(tags))?;
        }
        map.end()
    }
}

impl serde::Serialize for TagsAsMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(t, at)| (t, at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn first_sightings_are_kept_forgotten_and_saved() {
        let dir = tempfile::tempdir().unwrap();
        let seen = FirstSeen::open(dir.path());
        seen.observe("reg/app", &tags(&["v2", "v1"]));
        let first = seen.sightings("reg/app");
        let v1 = first.get("v1").unwrap();
        assert!(first.get("v3").is_none());
        std::thread::sleep(std::time::Duration::from_millis(5));
        // v3 is new, v1 keeps its time, v2 is no longer listed.
        seen.observe("reg/app", &tags(&["v3", "v1", "v3"]));
        let now = seen.sightings("reg/app");
        assert_eq!(now.get("v1"), Some(v1));
        assert!(now.get("v3").unwrap() > v1);
        assert_eq!(now.get("v2"), None);
        assert_eq!(now.0.len(), 2);
        // Saved in the nested form and read back.
        seen.save().unwrap();
        let nested: Nested =
            serde_json::from_slice(&std::fs::read(dir.path().join("seen.json")).unwrap()).unwrap();
        assert_eq!(nested["reg/app"]["v1"], v1);
        let again = FirstSeen::open(dir.path());
        assert_eq!(again.sightings("reg/app"), now);
        assert_eq!(again.sightings("reg/other"), Sightings::default());
        // Another replica's earlier sighting wins; its unknown tags are added.
        let earlier = v1 - jiff::SignedDuration::from_secs(60);
        again.adopt(
            "reg/app",
            [("v1".to_string(), earlier), ("v0".to_string(), earlier)],
        );
        let adopted = again.sightings("reg/app");
        assert_eq!(adopted.get("v1"), Some(earlier));
        assert_eq!(adopted.get("v0"), Some(earlier));
        assert_eq!(adopted.get("v3"), now.get("v3"));
        assert_eq!(
            adopted.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            ["v0", "v1", "v3"]
        );
    }
}
