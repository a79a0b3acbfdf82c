//! What we learned about manifests, keyed by digest.
//!
//! A digest names content that can never change, so what a manifest or config said is cached
//! forever: newest-build pays for each image's manifest and config once, not once per poll.
//! What a tag pointed to is remembered too, for images whose tags are immutable
//! (`tags = "immutable"`, the default): a release or build tag is resolved with HEAD once, not
//! every poll. The tag a `digest` strategy follows is always asked for again.
//! The cache is saved in the state dir so that a restart does not re-download everything; a
//! missing or corrupt file is rebuilt, never fatal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::manifest::IndexEntry;

/// What one digest names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A multi-platform index and its entries.
    Index {
        entries: Vec<IndexEntry>,
        /// The source repository its annotations name (absent from older cache files).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<Box<str>>,
    },
    /// One image: its creation time and platform, from the config blob.
    Image {
        created: Option<jiff::Timestamp>,
        platform: Option<String>,
        /// The source repository its annotations or labels name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<Box<str>>,
    },
}

/// A digest as the cache keeps it: a sha256 digest, what registries use, as its 32 bytes;
/// any other as its text. As a `String`, a digest is 71 bytes on the heap behind 24, and the
/// cache keeps one or two per image.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Digest {
    Sha256([u8; 32]),
    Other(Box<str>),
}

impl Digest {
    fn new(text: &str) -> Digest {
        let bytes = text
            .strip_prefix("sha256:")
            .filter(|hex| {
                hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            .and_then(|hex| crate::hex::decode(hex)?.try_into().ok());
        match bytes {
            Some(bytes) => Digest::Sha256(bytes),
            None => Digest::Other(text.into()),
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Digest::Sha256(bytes) => write!(f, "sha256:{}", crate::hex::encode(bytes)),
            Digest::Other(text) => f.write_str(text),
        }
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Ok(Digest::new(&text))
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    entries: HashMap<Digest, Entry>,
    /// `registry/repository:tag` -> the digest it was last resolved to.
    #[serde(default)]
    tags: HashMap<String, Digest>,
}

/// [`File`] as written: borrowed from the live maps, so that a save does not copy them.
#[derive(Serialize)]
struct FileRef<'a> {
    version: u32,
    entries: &'a HashMap<Digest, Entry>,
    tags: &'a HashMap<String, Digest>,
}

/// Tags remembered at most; past it the memory starts again (each tag then costs one HEAD).
const MAX_TAGS: usize = 500_000;

const VERSION: u32 = 1;

/// A digest-keyed cache, optionally backed by a file.
#[derive(Debug, Default)]
pub struct MetadataCache {
    path: Option<PathBuf>,
    entries: Mutex<HashMap<Digest, Entry>>,
    tags: Mutex<HashMap<String, Digest>>,
    dirty: AtomicBool,
}

/// What happened when the cache file was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Fresh,
    Read(usize),
    /// The file was unreadable; the cache starts empty and the file will be rewritten.
    Rebuilt(String),
}

impl MetadataCache {
    /// An in-memory cache.
    pub fn in_memory() -> MetadataCache {
        MetadataCache::default()
    }

    /// Loads `path` if it exists. A corrupt file is reported and replaced, never fatal.
    pub fn open(path: &Path) -> (MetadataCache, Loaded) {
        let empty = || (HashMap::new(), HashMap::new());
        let ((entries, tags), loaded) = match std::fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (empty(), Loaded::Fresh),
            Err(e) => (
                empty(),
                Loaded::Rebuilt(format!("cannot read {}: {e}", path.display())),
            ),
            Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
                Ok(file) if file.version == VERSION => {
                    let n = file.entries.len();
                    // Only digests are believed from the file, like from a registry.
                    let tags = file
                        .tags
                        .into_iter()
                        .filter(|(_, d)| crate::reference::is_valid_digest(&d.to_string()))
                        .take(MAX_TAGS)
                        .collect();
                    ((file.entries, tags), Loaded::Read(n))
                }
                Ok(file) => (
                    empty(),
                    Loaded::Rebuilt(format!("version {} is not {VERSION}", file.version)),
                ),
                Err(e) => (
                    empty(),
                    Loaded::Rebuilt(format!("{} is corrupt: {e}", path.display())),
                ),
            },
        };
        let cache = MetadataCache {
            path: Some(path.to_path_buf()),
            entries: Mutex::new(entries),
            tags: Mutex::new(tags),
            dirty: AtomicBool::new(matches!(loaded, Loaded::Rebuilt(_))),
        };
        (cache, loaded)
    }

    pub fn get(&self, digest: &str) -> Option<Entry> {
        self.entries
            .lock()
            .expect("cache lock")
            .get(&Digest::new(digest))
            .cloned()
    }

    pub fn insert(&self, digest: &str, entry: Entry) {
        self.entries
            .lock()
            .expect("cache lock")
            .insert(Digest::new(digest), entry);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// The digest `tag` of `repository` at `registry` was last resolved to.
    pub fn tag(&self, registry: &str, repository: &str, tag: &str) -> Option<String> {
        self.tags
            .lock()
            .expect("cache lock")
            .get(&format!("{registry}/{repository}:{tag}"))
            .map(Digest::to_string)
    }

    /// Remembers what `tag` was just resolved to.
    pub fn learn_tag(&self, registry: &str, repository: &str, tag: &str, digest: &str) {
        let mut tags = self.tags.lock().expect("cache lock");
        if tags.len() >= MAX_TAGS {
            tags.clear();
        }
        let key = format!("{registry}/{repository}:{tag}");
        let digest = Digest::new(digest);
        if tags.get(&key) != Some(&digest) {
            tags.insert(key, digest);
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the cache if it changed: to a temporary file, then renamed over the old one, so a
    /// crash mid-write leaves the previous file intact.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        crate::private::write_json_atomically(path, |w| {
            let entries = self.entries.lock().expect("cache lock");
            let tags = self.tags.lock().expect("cache lock");
            let file = FileRef {
                version: VERSION,
                entries: &entries,
                tags: &tags,
            };
            serde_json::to_writer(w, &file)
        })
        .inspect_err(|_| self.dirty.store(true, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_and_rebuilds_when_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry/metadata.json");
        let (cache, loaded) = MetadataCache::open(&path);
        assert_eq!(loaded, Loaded::Fresh);
        let entry = Entry::Image {
            created: Some("2026-01-01T00:00:00Z".parse().unwrap()),
            platform: Some("linux/amd64".into()),
            source: Some("https://github.com/acme/api".into()),
        };
        cache.insert("sha256:aa", entry.clone());
        cache.save().unwrap();
        let (again, loaded) = MetadataCache::open(&path);
        assert_eq!(loaded, Loaded::Read(1));
        assert_eq!(again.get("sha256:aa"), Some(entry.clone()));

        // A sha256 digest is kept as its bytes and comes back as the same text, in memory
        // and through the file; any other digest as it was written.
        let sha = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert!(matches!(Digest::new(&sha), Digest::Sha256(_)));
        assert_eq!(Digest::new(&sha).to_string(), sha);
        let upper = sha.to_uppercase().replace("SHA256", "sha256");
        assert_eq!(Digest::new(&upper), Digest::Other(upper.clone().into()));
        again.learn_tag("reg", "org/app", "v1", &sha);
        again.learn_tag(
            "reg",
            "org/app",
            "v2",
            &format!("sha512:{}", "ab".repeat(64)),
        );
        again.insert(&sha, entry.clone());
        again.save().unwrap();
        let (third, _) = MetadataCache::open(&path);
        assert_eq!(third.tag("reg", "org/app", "v1"), Some(sha.clone()));
        assert_eq!(
            third.tag("reg", "org/app", "v2"),
            Some(format!("sha512:{}", "ab".repeat(64)))
        );
        assert_eq!(third.get(&sha), Some(entry.clone()));
        assert!(std::fs::read_to_string(&path).unwrap().contains(&sha));

        std::fs::write(&path, b"{\"version\":1,\"entr").unwrap();
        let (rebuilt, loaded) = MetadataCache::open(&path);
        assert!(matches!(loaded, Loaded::Rebuilt(_)), "{loaded:?}");
        assert!(rebuilt.is_empty());
        rebuilt.save().unwrap();
        assert_eq!(MetadataCache::open(&path).1, Loaded::Read(0));
    }
}
