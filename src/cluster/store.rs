//! What the replicas share in etcd beside their membership, so that whichever replica owns an
//! image decides as the one before it would have:
//!
//! ```text
//! /image-updater/NAME/holds           holds and releases (`image-updater hold`, `release`)
//! /image-updater/NAME/images/ALIAS    the owner's record of an image: its status per
//!                                     environment (what was written, revert holds, errors)
//!                                     and when its repository's tags were first seen
//! /image-updater/NAME/pokes/ALIAS     "a registry reported a push": put by the replica that
//!                                     received the webhook, under its lease, for the owner
//! /image-updater/NAME/requests/ENV    the pull request open for an environment and what it
//!                                     proposes, read and written under the branch's lock
//! ```
//!
//! Everything read back is bounded and parsed as hostile: another version of image-updater,
//! or a person with `etcdctl`, may have written it.

use std::collections::BTreeMap;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::config::Cluster;
use crate::state::{Holds, OpenRequest, Status};

/// The largest value read: etcd's own default request limit is 1.5 MiB.
const MAX_VALUE: usize = 1024 * 1024;
/// The most image records or pokes read in one range.
const MAX_KEYS: i64 = 100_000;
/// How many times a hold is retried when another writer changed the holds in between.
const CAS_ATTEMPTS: usize = 16;

/// A failure to read or write the shared state.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// etcd could not be reached, did not answer in time, or refused the request.
    #[error("etcd: {0}")]
    Etcd(String),
    /// A value that is not what image-updater writes.
    #[error(
        "etcd key {key} does not hold what image-updater writes ({why}); fix or delete it with etcdctl"
    )]
    Corrupt { key: String, why: String },
    /// Other writers changed the key every time this one tried.
    #[error("etcd key {0} kept changing while it was updated; try again")]
    Contended(String),
}

/// One image as its owner last recorded it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The replica that wrote it.
    pub by: String,
    pub at: Option<jiff::Timestamp>,
    /// By environment.
    #[serde(default)]
    pub status: BTreeMap<String, Status>,
    /// When each tag of the image's repository was first listed, for `min_age` (the newest
    /// [`MAX_SIGHTINGS`]; an older one counts from when the next owner sees it, which is the
    /// safe side).
    #[serde(default)]
    pub seen: BTreeMap<String, jiff::Timestamp>,
    /// What the owner resolved of the newest tags (at most [`MAX_RESOLVED`]): the digest each
    /// names, and what that digest's manifest and config said. The next owner decides from
    /// them at once instead of asking the registry for every candidate again (for
    /// `newest-build`, a few requests a tag) at its share of the rate.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resolved: BTreeMap<String, Resolved>,
}

/// The most first-sightings a record carries.
pub const MAX_SIGHTINGS: usize = 2000;
/// The most resolved tags a record carries: enough for every candidate of a busy build
/// stream, a few tens of kilobytes.
pub const MAX_RESOLVED: usize = 200;

/// One tag as its owner resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub digest: String,
    /// What the digest names, when the owner fetched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<crate::registry::cache::Entry>,
}

impl Resolved {
    /// Whether what another replica (or a person with etcdctl) wrote is within what
    /// image-updater writes: a digest as registries name them, and a bounded description.
    pub fn is_sound(&self) -> bool {
        use crate::registry::cache::Entry;
        let text = |t: &Option<Box<str>>| t.as_deref().is_none_or(|t| t.len() <= 256);
        crate::reference::is_valid_digest(&self.digest)
            && match &self.entry {
                None => true,
                Some(Entry::Image {
                    platform, source, ..
                }) => platform.as_ref().is_none_or(|p| p.len() <= 64) && text(source),
                Some(Entry::Index { entries, source }) => {
                    entries.len() <= 64
                        && text(source)
                        && entries.iter().all(|e| {
                            crate::reference::is_valid_digest(&e.digest)
                                && e.platform.as_ref().is_none_or(|p| p.len() <= 64)
                        })
                }
            }
    }
}

/// A connection to etcd for the shared keys of one cluster, made on first use.
pub struct Store {
    config: Cluster,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl Store {
    pub fn new(config: Cluster) -> Store {
        Store {
            config,
            client: tokio::sync::Mutex::new(None),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("/image-updater/{}/{rest}", self.config.name)
    }

    /// Forgets the connection after a failed request: the next one connects again, to a
    /// member that answers.
    async fn failed(&self, e: StoreError) -> StoreError {
        if matches!(e, StoreError::Etcd(_)) {
            *self.client.lock().await = None;
        }
        e
    }

    async fn client(&self) -> Result<Client, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = super::connect::connect(&self.config)
            .await
            .map_err(StoreError::Etcd)?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// The holds every replica goes by; none when the key was never written.
    pub async fn holds(&self) -> Result<Holds, StoreError> {
        Ok(self.holds_at().await?.0)
    }

    /// The holds and the revision they were read at (0: no key yet).
    async fn holds_at(&self) -> Result<(Holds, i64), StoreError> {
        let key = self.key("holds");
        let got = self.get(&key, None).await?;
        match got.kvs().first() {
            None => Ok((Holds::default(), 0)),
            Some(kv) => Ok((parse(&key, kv.value())?, kv.mod_revision())),
        }
    }

    /// Changes the holds with `change`, atomically against other writers (another replica's
    /// `release`, a person's `hold`): read, change, write if nobody wrote in between.
    pub async fn update_holds(&self, change: impl Fn(&mut Holds)) -> Result<Holds, StoreError> {
        let key = self.key("holds");
        for _ in 0..CAS_ATTEMPTS {
            let (mut holds, revision) = self.holds_at().await?;
            change(&mut holds);
            let value = serde_json::to_vec(&holds).map_err(|e| StoreError::Etcd(e.to_string()))?;
            let unchanged = Compare::mod_revision(key.as_str(), CompareOp::Equal, revision);
            let txn =
                Txn::new()
                    .when([unchanged])
                    .and_then([TxnOp::put(key.as_str(), value, None)]);
            let mut client = self.client().await?;
            let done = super::connect::timed(client.txn(txn))
                .await
                .map_err(StoreError::Etcd)
                .and_then(|r| r.map_err(|e| StoreError::Etcd(format!("writing {key}: {e}"))));
            let done = match done {
                Ok(done) => done,
                Err(e) => return Err(self.failed(e).await),
            };
            if done.succeeded() {
                return Ok(holds);
            }
        }
        Err(StoreError::Contended(key))
    }

    /// The record of `alias`, if any replica wrote one.
    pub async fn record(&self, alias: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.record_at(alias).await?.map(|(r, _)| r))
    }

    /// The record of `alias` and the revision it was written at.
    pub async fn record_at(&self, alias: &str) -> Result<Option<(Record, i64)>, StoreError> {
        let key = self.key(&format!("images/{alias}"));
        let got = self.get(&key, None).await?;
        got.kvs()
            .first()
            .map(|kv| Ok((parse(&key, kv.value())?, kv.mod_revision())))
            .transpose()
    }

    /// Every image's record, by alias (for `status` on any replica). A record that does not
    /// parse is reported as such, not skipped.
    pub async fn records(&self) -> Result<BTreeMap<String, Record>, StoreError> {
        let prefix = self.key("images/");
        let options = GetOptions::new().with_prefix().with_limit(MAX_KEYS);
        let got = self.get(&prefix, Some(options)).await?;
        let mut records = BTreeMap::new();
        for kv in got.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let Some(alias) = key.strip_prefix(&prefix) else {
                continue;
            };
            records.insert(alias.to_string(), parse(&key, kv.value())?);
        }
        Ok(records)
    }

    /// Writes the record of `alias`; returns the revision it was written at.
    pub async fn publish(&self, alias: &str, record: &Record) -> Result<i64, StoreError> {
        let key = self.key(&format!("images/{alias}"));
        let value = serde_json::to_vec(record).map_err(|e| StoreError::Etcd(e.to_string()))?;
        if value.len() > MAX_VALUE {
            return Err(StoreError::Etcd(format!(
                "the record of {alias} is {} bytes, over the {MAX_VALUE} etcd takes",
                value.len()
            )));
        }
        self.put(&key, value, None).await
    }

    /// The pull request open for `environment`, as the last replica to write its branch left
    /// it.
    pub async fn request(&self, environment: &str) -> Result<Option<OpenRequest>, StoreError> {
        let key = self.key(&format!("requests/{environment}"));
        let got = self.get(&key, None).await?;
        got.kvs()
            .first()
            .map(|kv| parse(&key, kv.value()))
            .transpose()
    }

    /// Records (or with `None` forgets) the request open for `environment`.
    pub async fn set_request(
        &self,
        environment: &str,
        request: Option<&OpenRequest>,
    ) -> Result<(), StoreError> {
        let key = self.key(&format!("requests/{environment}"));
        match request {
            Some(r) => {
                let value = serde_json::to_vec(r).map_err(|e| StoreError::Etcd(e.to_string()))?;
                self.put(&key, value, None).await.map(|_| ())
            }
            None => {
                let mut client = self.client().await?;
                let deleted = super::connect::timed(client.delete(key.as_str(), None))
                    .await
                    .map_err(StoreError::Etcd)
                    .and_then(|r| r.map_err(|e| StoreError::Etcd(format!("deleting {key}: {e}"))));
                match deleted {
                    Ok(_) => Ok(()),
                    Err(e) => Err(self.failed(e).await),
                }
            }
        }
    }

    /// Asks the owner of `alias` to check it now. The key lives as long as `lease` (the
    /// poker's), so a poke nobody took does not linger.
    pub async fn poke(&self, alias: &str, by: &str, lease: i64) -> Result<(), StoreError> {
        let key = self.key(&format!("pokes/{alias}"));
        let options = PutOptions::new().with_lease(lease);
        self.put(&key, by.as_bytes().to_vec(), Some(options))
            .await
            .map(|_| ())
    }

    /// The aliases poked after `revision`, and the revision to ask from next time.
    pub async fn pokes_after(&self, revision: i64) -> Result<(Vec<String>, i64), StoreError> {
        let prefix = self.key("pokes/");
        let options = GetOptions::new().with_prefix().with_limit(MAX_KEYS);
        let got = self.get(&prefix, Some(options)).await?;
        let now = got.header().map_or(revision, |h| h.revision());
        let aliases = got
            .kvs()
            .iter()
            .filter(|kv| kv.mod_revision() > revision)
            .filter_map(|kv| kv.key_str().ok()?.strip_prefix(&prefix).map(String::from))
            .filter(|alias| alias.len() <= 255)
            .collect();
        Ok((aliases, now.max(revision)))
    }

    async fn get(
        &self,
        key: &str,
        options: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        let mut client = self.client().await?;
        let got = super::connect::timed(client.get(key, options))
            .await
            .map_err(StoreError::Etcd)
            .and_then(|r| r.map_err(|e| StoreError::Etcd(format!("reading {key}: {e}"))));
        match got {
            Ok(got) => Ok(got),
            Err(e) => Err(self.failed(e).await),
        }
    }

    /// Writes `key`; returns the revision it was written at.
    async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        options: Option<PutOptions>,
    ) -> Result<i64, StoreError> {
        let mut client = self.client().await?;
        let put = super::connect::timed(client.put(key, value, options))
            .await
            .map_err(StoreError::Etcd)
            .and_then(|r| r.map_err(|e| StoreError::Etcd(format!("writing {key}: {e}"))));
        match put {
            Ok(put) => Ok(put.header().map_or(0, |h| h.revision())),
            Err(e) => Err(self.failed(e).await),
        }
    }
}

/// A value read back, bounded and parsed.
fn parse<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    if value.len() > MAX_VALUE {
        return Err(StoreError::Corrupt {
            key: key.into(),
            why: format!("{} bytes, over {MAX_VALUE}", value.len()),
        });
    }
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: key.into(),
        why: e.to_string(),
    })
}
