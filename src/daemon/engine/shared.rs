//! What survives a config reload: the state dir and its stores, the caches, the metrics, the
//! cluster session, and the mirrors and forge clients opened so far.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::config::Config;
use crate::daemon::metrics::DaemonMetrics;
use crate::registry::{self, MetadataCache, TokenStore, Tuning};
use crate::state::{FirstSeen, RequestStore, StatusStore};
use crate::writeback::Mirror;

/// A repository's mirror, opened on first use; `None` until then or after a failure.
type MirrorSlot = Arc<Mutex<Option<Mirror>>>;

/// What survives a config reload.
#[derive(Clone)]
pub struct Shared {
    pub state_dir: PathBuf,
    pub registry_metrics: Arc<registry::Metrics>,
    pub cache: Arc<MetadataCache>,
    /// Registry tokens, kept until they expire, across reloads and restarts.
    pub tokens: Arc<TokenStore>,
    pub metrics: Arc<DaemonMetrics>,
    pub status: Arc<StatusStore>,
    pub seen: Arc<FirstSeen>,
    /// The pull request open per environment.
    pub requests: Arc<RequestStore>,
    /// Signature checks, and the digests that passed them.
    pub verifier: Arc<crate::verify::Verifier>,
    /// With `[cluster]`: this replica's etcd session while it is a member, for branch locks.
    pub cluster: Arc<
        std::sync::OnceLock<tokio::sync::watch::Receiver<Option<crate::cluster::etcd::Session>>>,
    >,
    /// With `[cluster]`: the holds and image records shared through etcd.
    pub handover: Arc<std::sync::OnceLock<Arc<crate::cluster::handover::Handover>>>,
    /// With `[cluster]`: the live replicas, as this one last read them. A cycle checks an
    /// image only while this replica still owns it: a cycle that began before the members
    /// changed must not go on polling what another replica now owns.
    pub members: Arc<std::sync::OnceLock<tokio::sync::watch::Receiver<crate::cluster::Members>>>,
    /// How registry clients retry and share a registry's rate; the daemon names its replica
    /// and sets the share in a cluster.
    pub tuning: Tuning,
    /// Mirrors by repository name; each is used by one branch update at a time.
    pub(super) mirrors: Arc<Mutex<BTreeMap<String, MirrorSlot>>>,
    /// Forge API clients by repository name (they keep tokens), made on first use.
    pub(super) forges: Arc<std::sync::Mutex<BTreeMap<String, Arc<crate::forge::Client>>>>,
    /// Why each image was last left as it is, so a reason repeated every cycle is logged at
    /// INFO once.
    pub(super) said: Arc<std::sync::Mutex<BTreeMap<(String, String), String>>>,
    /// The last verdicts on each image's tags, for the status page.
    pub explained: Arc<crate::daemon::overview::Explained>,
    /// When the state files were last written by [`Shared::save_due`].
    saved: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// How often a running daemon writes its state files at most.
pub const SAVE_EVERY: Duration = Duration::from_secs(30);

impl Shared {
    /// Opens the state dir: the metadata cache and the status store (rebuilt if corrupt).
    pub fn open(state_dir: PathBuf) -> Shared {
        let (cache, loaded) = MetadataCache::open(&state_dir.join("cache/metadata.json"));
        tracing::debug!(?loaded, entries = cache.len(), "metadata cache opened");
        Shared {
            tokens: Arc::new(TokenStore::open(&state_dir.join("cache/tokens.json"))),
            status: Arc::new(StatusStore::open(&state_dir)),
            seen: Arc::new(FirstSeen::open(&state_dir)),
            requests: Arc::new(RequestStore::open(&state_dir)),
            verifier: Arc::new(crate::verify::Verifier::new()),
            cluster: Arc::default(),
            handover: Arc::default(),
            members: Arc::default(),
            tuning: Tuning::default(),
            state_dir,
            registry_metrics: Arc::new(registry::Metrics::default()),
            cache: Arc::new(cache),
            metrics: Arc::new(DaemonMetrics::new()),
            mirrors: Arc::default(),
            forges: Arc::default(),
            said: Arc::default(),
            explained: Arc::default(),
            saved: Arc::default(),
        }
    }

    /// With `[cluster]`, for a command run beside the replicas (`once`, `plan`, `test`): holds
    /// and image records are read from etcd, as the replicas read them. Such a command has no
    /// lease, so it takes no branch lock: git's leased push guards its writes.
    pub fn join_cluster_state(&self, config: &Config) {
        if let Some(cluster) = &config.cluster {
            let handover = crate::cluster::handover::Handover::new(
                cluster.clone(),
                crate::cluster::replica_id(),
                self.cache.clone(),
            );
            handover.taken(config.images.keys().cloned());
            let _ = self.handover.set(Arc::new(handover));
        }
    }

    /// Forgets the opened mirrors and forge clients, so the next write reads the
    /// repositories' credentials and urls again (after a reload). A write in progress keeps
    /// the mirror it has.
    pub async fn forget_mirrors(&self) {
        self.mirrors.lock().await.clear();
        self.forges.lock().expect("forges lock").clear();
    }

    /// [`Shared::save`], unless the last save was less than [`SAVE_EVERY`] ago: at thousands
    /// of images, cycles end every second or two, and writing every file each time is most of
    /// the daemon's work. Shutdown, `once` and `plan` save whatever the time.
    pub fn save_due(&self) {
        {
            let mut last = self.saved.lock().expect("save time lock");
            if last.is_some_and(|at| at.elapsed() < SAVE_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        self.save();
    }

    /// Writes the cache and the status store; failures are logged, the next save tries again.
    pub fn save(&self) {
        if let Err(e) = self.cache.save() {
            tracing::warn!(error = %e, "cannot save the metadata cache");
        }
        if let Err(e) = self.tokens.save() {
            tracing::warn!(error = %e, "cannot save the registry tokens");
        }
        if let Err(e) = self.status.save() {
            tracing::warn!(error = %e, "cannot save status.json");
        }
        if let Err(e) = self.seen.save() {
            tracing::warn!(error = %e, "cannot save seen.json");
        }
    }
}
