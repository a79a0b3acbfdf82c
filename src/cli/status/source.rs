//! Where `status`, `hold` and `release` read and write: the state dir a single daemon keeps,
//! or, with `[cluster]`, etcd, which every replica reads. In a cluster a hold given on any
//! machine stops every replica, and `status` shows every image whoever owns it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use image_updater::cluster::Members;
use image_updater::cluster::store::{Record, Store};
use image_updater::config::{Config, Image};
use image_updater::state::{Holds, Status, StatusStore};

use crate::cli::{ConfigArgs, small_runtime};

pub enum Source {
    Local(PathBuf),
    Cluster(Box<Etcd>),
}

/// The cluster's etcd, and a runtime to ask it from these synchronous commands.
pub struct Etcd {
    store: Store,
    cluster: image_updater::config::Cluster,
    /// The config's work fingerprint: members with another are not counted.
    fingerprint: String,
    runtime: tokio::runtime::Runtime,
}

/// What the daemon (or the cluster) knows, read once.
pub struct View {
    pub holds: Holds,
    entries: Entries,
    /// The live replicas, in a cluster.
    members: Option<Members>,
}

enum Entries {
    Local(StatusStore),
    /// By alias; an image no replica has recorded yet has none.
    Cluster(BTreeMap<String, Record>),
}

impl Source {
    /// The config's source, said on stderr: the state dir (with a warning when no daemon
    /// wrote there), or the cluster.
    pub fn open(common: &ConfigArgs, config: &Config) -> Result<Source, String> {
        let Some(cluster) = &config.cluster else {
            let state_dir = common.state_dir(config);
            eprintln!("state dir: {}", state_dir.display());
            if !state_dir.join("status.json").exists() {
                eprintln!(
                    "warning: {} holds no status.json: no daemon has run with this state dir (is it the one the daemon uses?)",
                    state_dir.display()
                );
            }
            return Ok(Source::Local(state_dir));
        };
        eprintln!(
            "cluster {} at {}",
            cluster.name,
            cluster.endpoints.join(", ")
        );
        Ok(Source::Cluster(Box::new(Etcd {
            store: Store::new(cluster.clone()),
            cluster: cluster.clone(),
            fingerprint: image_updater::cluster::fingerprint(config),
            runtime: small_runtime()?,
        })))
    }

    pub fn view(&self) -> Result<View, String> {
        match self {
            Source::Local(state_dir) => Ok(View {
                holds: Holds::read(state_dir),
                entries: Entries::Local(StatusStore::open(state_dir)),
                members: None,
            }),
            Source::Cluster(etcd) => etcd.runtime.block_on(async {
                let holds = etcd.store.holds().await.map_err(|e| e.to_string())?;
                let records = etcd.store.records().await.map_err(|e| e.to_string())?;
                let members =
                    image_updater::cluster::etcd::live(&etcd.cluster, &etcd.fingerprint).await?;
                Ok(View {
                    holds,
                    entries: Entries::Cluster(records),
                    members: Some(members),
                })
            }),
        }
    }

    /// Changes the holds: the file, or etcd's key atomically against other writers.
    pub fn update_holds(&self, change: impl Fn(&mut Holds)) -> Result<(), String> {
        match self {
            Source::Local(state_dir) => {
                let mut holds = Holds::read(state_dir);
                change(&mut holds);
                holds
                    .write(state_dir)
                    .map_err(|e| format!("cannot write {}: {e}", Holds::path(state_dir).display()))
            }
            Source::Cluster(etcd) => etcd
                .runtime
                .block_on(etcd.store.update_holds(change))
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    /// The open pull requests are kept by the replica that opened them; `status` lists them
    /// from a single daemon's state dir (in a cluster, each row names its own request).
    pub fn state_dir(&self) -> Option<&PathBuf> {
        match self {
            Source::Local(dir) => Some(dir),
            Source::Cluster(_) => None,
        }
    }
}

impl image_updater::daemon::overview::Known for View {
    fn status(&self, alias: &str, environment: &str) -> Status {
        View::status(self, alias, environment)
    }

    fn owner(&self, image: &Image) -> Option<String> {
        View::owner(self, image)
    }
}

impl View {
    pub fn status(&self, alias: &str, env: &str) -> Status {
        match &self.entries {
            Entries::Local(store) => store.get(alias, env),
            Entries::Cluster(records) => records
                .get(alias)
                .and_then(|r| r.status.get(env))
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// The replica that owns `image` now, in a cluster ("none live" when none is).
    pub fn owner(&self, image: &Image) -> Option<String> {
        image_updater::daemon::overview::owner(self.members.as_ref(), image)
    }
}
