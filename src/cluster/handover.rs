//! What an image's owner leaves for the next one, and what a new owner picks up before its
//! first poll: a replica that takes an image over knows what was written (so a person's
//! revert is still held), which values are held, and since when its tags were seen (so
//! `min_age` does not start again).
//!
//! Every cycle reads the holds from etcd before it decides anything, so a `hold` given on any
//! replica stops every replica's next write. After a cycle the owner publishes the records of
//! the images it checked, when anything but the check time changed, or every
//! [`REFRESH`] so `status` elsewhere shows recent checks.
//!
//! A replica writing an environment's pull request borrows the records of the images it
//! proposes that others own, and gives back those whose decisive state (what was written, a
//! held value) the write changed; record revisions tell an owner that happened.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::store::{MAX_RESOLVED, MAX_SIGHTINGS, Record, Resolved, Store, StoreError};
use crate::config::{Cluster, Image, Tags};
use crate::registry::MetadataCache;
use crate::state::{FirstSeen, Holds, StatusStore};

/// How old a published record may grow while only its check times change.
pub const REFRESH: Duration = Duration::from_secs(300);

pub struct Handover {
    me: String,
    store: Store,
    /// What this replica knows of tags and digests: published with its images' records, and
    /// filled from the records of images it takes over.
    cache: std::sync::Arc<MetadataCache>,
    /// Images this replica took over, whose record is read before their next check.
    adopt: Mutex<BTreeSet<String>>,
    /// What was last published of each image (a hash without check times), and when.
    published: Mutex<HashMap<String, (u64, Instant)>>,
    /// The revision of each image's record this replica last read or wrote: a later one was
    /// written by another replica (a pull request it wrote proposed the image).
    revisions: Mutex<HashMap<String, i64>>,
}

impl Handover {
    pub fn new(config: Cluster, me: String, cache: std::sync::Arc<MetadataCache>) -> Handover {
        Handover {
            me,
            store: Store::new(config),
            cache,
            adopt: Mutex::default(),
            published: Mutex::default(),
            revisions: Mutex::default(),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Marks images this replica now owns and did not before: their records are read before
    /// they are next checked.
    pub fn taken(&self, aliases: impl IntoIterator<Item = String>) {
        self.adopt.lock().expect("adopt lock").extend(aliases);
    }

    /// Before a cycle: the cluster's holds, and the records of the cycle's images this
    /// replica has just taken over, merged into its own state. An error here fails the cycle:
    /// deciding without the holds or the last owner's record could write what they forbid.
    pub async fn prepare(
        &self,
        images: &[&Image],
        status: &StatusStore,
        seen: &FirstSeen,
    ) -> Result<Holds, StoreError> {
        let holds = self.store.holds().await?;
        let due: Vec<&Image> = {
            let adopt = self.adopt.lock().expect("adopt lock");
            images
                .iter()
                .copied()
                .filter(|i| adopt.contains(&i.alias))
                .collect()
        };
        for image in due {
            if self.adopt_record(image, status, seen).await? {
                tracing::info!(image = %image.alias, "cluster: took over the image's record");
            }
            self.adopt.lock().expect("adopt lock").remove(&image.alias);
            // What is here now is what the record says: published again only on change.
            self.published
                .lock()
                .expect("published lock")
                .remove(&image.alias);
        }
        Ok(holds)
    }

    /// Reads `image`'s record and, when another replica wrote it, makes it this replica's
    /// state; says whether it did.
    async fn adopt_record(
        &self,
        image: &Image,
        status: &StatusStore,
        seen: &FirstSeen,
    ) -> Result<bool, StoreError> {
        match self.store.record_at(&image.alias).await {
            Ok(Some((record, revision))) => Ok(self.apply(image, record, revision, status, seen)),
            Ok(None) => {
                // None yet: any record written from now on is news.
                self.wrote(&image.alias, 0);
                Ok(false)
            }
            // One unreadable record stops nothing but itself: this replica goes on with what
            // it knows of the image (the branch is the truth of what is deployed), and its
            // next publish writes a readable record over it.
            Err(StoreError::Corrupt { key, why }) => {
                tracing::error!(image = %image.alias, %key, %why, "cluster: the image's record does not read; checking it without it, and writing it again");
                self.wrote(&image.alias, 0);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes `record`, read at `revision`, this replica's state of `image` when another
    /// replica wrote it; says whether it did.
    fn apply(
        &self,
        image: &Image,
        record: Record,
        revision: i64,
        status: &StatusStore,
        seen: &FirstSeen,
    ) -> bool {
        self.wrote(&image.alias, revision);
        if record.by == self.me {
            return false;
        }
        for (env, entry) in record.status {
            status.update(&image.alias, &env, |s| *s = entry);
        }
        seen.adopt(&image.reference.repository(), record.seen);
        self.learn(image, record.resolved);
        true
    }

    /// What the last owner resolved of `image`'s tags, into this replica's cache where it
    /// knows nothing yet. Only for immutable tags (a mutable one is asked for every poll
    /// anyway); an entry that is not what image-updater writes is left out.
    fn learn(&self, image: &Image, resolved: std::collections::BTreeMap<String, Resolved>) {
        if image.tags != Tags::Immutable {
            return;
        }
        let registry = image.registry_key();
        let repository = &image.reference.path;
        let mut learned = 0usize;
        for (tag, r) in resolved.into_iter().take(MAX_RESOLVED) {
            if !crate::reference::is_valid_tag(&tag) || !r.is_sound() {
                tracing::warn!(image = %image.alias, %tag, "cluster: a resolved tag in the image's record is not what image-updater writes; resolving it again");
                continue;
            }
            if self.cache.tag(&registry, repository, &tag).is_none() {
                self.cache.learn_tag(&registry, repository, &tag, &r.digest);
                learned = learned.saturating_add(1);
            }
            if let Some(entry) = r.entry
                && self.cache.get(&r.digest).is_none()
            {
                self.cache.insert(&r.digest, entry);
            }
        }
        if learned > 0 {
            tracing::debug!(image = %image.alias, tags = learned, "cluster: learned what the last owner resolved");
        }
    }

    /// What this replica resolved of `image`'s newest tags (by first sighting), for its record.
    fn resolved_of(
        &self,
        image: &Image,
        newest: &[(&str, jiff::Timestamp)],
    ) -> std::collections::BTreeMap<String, Resolved> {
        if image.tags != Tags::Immutable {
            return Default::default();
        }
        let registry = image.registry_key();
        let repository = &image.reference.path;
        newest
            .iter()
            .filter_map(|(tag, _)| {
                let digest = self.cache.tag(&registry, repository, tag)?;
                let entry = self.cache.get(&digest);
                Some((tag.to_string(), Resolved { digest, entry }))
            })
            .take(MAX_RESOLVED)
            .collect()
    }

    /// Under a branch's lock, before writing changes of `images`: those whose record another
    /// replica wrote since this one last read or wrote it (it wrote a pull request that
    /// proposed them: merged, or closed unmerged) are taken from the record and returned, to
    /// be decided again rather than written from what this replica knew before.
    pub async fn changed_elsewhere(
        &self,
        images: &[&Image],
        status: &StatusStore,
        seen: &FirstSeen,
    ) -> Result<Vec<String>, StoreError> {
        let mut changed = Vec::new();
        for image in images {
            let known = self
                .revisions
                .lock()
                .expect("revisions lock")
                .get(&image.alias)
                .copied();
            let (record, revision) = match self.store.record_at(&image.alias).await {
                Ok(Some(read)) => read,
                Ok(None) => continue,
                // Unreadable: nothing in it to take; the owner writes it again.
                Err(StoreError::Corrupt { key, why }) => {
                    tracing::warn!(image = %image.alias, %key, %why, "cluster: the image's record does not read; written again by its owner");
                    continue;
                }
                Err(e) => return Err(e),
            };
            // `apply` takes nothing this replica wrote itself.
            let news = known.is_some_and(|known| revision > known)
                && decisive(&record.status) != decisive(&status.environments(&image.alias));
            if news && self.apply(image, record, revision, status, seen) {
                changed.push(image.alias.clone());
            }
        }
        Ok(changed)
    }

    /// Before a replica writes an environment's pull request, which proposes images other
    /// replicas own: their records, so that what the write records of them (merged, closed
    /// unmerged) starts from what their owners know. Returns what decides their next writes,
    /// to tell after the write whether it changed.
    pub async fn borrow(
        &self,
        images: &[&Image],
        status: &StatusStore,
        seen: &FirstSeen,
    ) -> Result<Vec<String>, StoreError> {
        let mut before = Vec::new();
        for image in images {
            self.adopt_record(image, status, seen).await?;
            before.push(decisive(&status.environments(&image.alias)));
        }
        Ok(before)
    }

    /// After such a write: the records of the borrowed images whose decisive state the write
    /// changed (`before`, from [`Handover::borrow`]) go back to etcd, and their owners are
    /// poked to read them before their next check. Carrying another replica's proposal along
    /// changes nothing of it, and gives nothing back.
    pub async fn give_back(
        &self,
        images: &[&Image],
        before: &[String],
        status: &StatusStore,
        seen: &FirstSeen,
        lease: i64,
    ) {
        for (image, before) in images.iter().zip(before) {
            if decisive(&status.environments(&image.alias)) == *before {
                continue;
            }
            let record = self.record_of(image, status, seen);
            let published = self.store.publish(&image.alias, &record).await;
            let poked = match published {
                Ok(revision) => {
                    self.wrote(&image.alias, revision);
                    self.store.poke(&image.alias, &self.me, lease).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = poked {
                tracing::warn!(image = %image.alias, error = %e, "cluster: cannot hand the image's record back to its owner");
            }
        }
    }

    fn wrote(&self, alias: &str, revision: i64) {
        self.revisions
            .lock()
            .expect("revisions lock")
            .insert(alias.to_string(), revision);
    }

    /// After a cycle: publishes the records of `images` that changed. Failures are logged:
    /// the commit is made, and the next cycle publishes again.
    pub async fn publish(&self, images: &[&Image], status: &StatusStore, seen: &FirstSeen) {
        for image in images {
            let record = self.record_of(image, status, seen);
            let hash = unchanging_hash(&record);
            let fresh = self
                .published
                .lock()
                .expect("published lock")
                .get(&image.alias)
                .is_some_and(|(h, at)| *h == hash && at.elapsed() < REFRESH);
            if fresh {
                continue;
            }
            match self.store.publish(&image.alias, &record).await {
                Ok(revision) => {
                    self.wrote(&image.alias, revision);
                    self.published
                        .lock()
                        .expect("published lock")
                        .insert(image.alias.clone(), (hash, Instant::now()));
                }
                Err(e) => {
                    tracing::warn!(image = %image.alias, error = %e, "cluster: cannot publish the image's record; trying again after its next check");
                }
            }
        }
    }

    fn record_of(&self, image: &Image, status: &StatusStore, seen: &FirstSeen) -> Record {
        let sightings = seen.sightings(&image.reference.repository());
        let mut newest: Vec<(&str, jiff::Timestamp)> = sightings.iter().collect();
        newest.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
        newest.truncate(MAX_SIGHTINGS);
        Record {
            by: self.me.clone(),
            at: Some(jiff::Timestamp::now()),
            status: status.environments(&image.alias),
            resolved: self.resolved_of(image, &newest),
            seen: newest
                .into_iter()
                .map(|(t, at)| (t.to_string(), at))
                .collect(),
        }
    }
}

/// What decides an image's next writes in each environment: what was last written, and a
/// held value. Another replica's write that changes it (a request merged, or closed unmerged)
/// is news to the owner; the rest its own checks refresh.
fn decisive(status: &std::collections::BTreeMap<String, crate::state::Status>) -> String {
    let parts: Vec<_> = status
        .iter()
        .map(|(env, s)| (env, &s.written, &s.written_digest, &s.held))
        .collect();
    serde_json::to_string(&parts).unwrap_or_default()
}

/// A hash of what a record says apart from when: its writer, write time and check times.
fn unchanging_hash(record: &Record) -> u64 {
    let mut plain = record.clone();
    plain.at = None;
    for s in plain.status.values_mut() {
        s.last_check = None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(&plain).unwrap_or_default().hash(&mut h);
    h.finish()
}
