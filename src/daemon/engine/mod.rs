//! One cycle: poll the registries for a set of images, choose a tag per environment, and write
//! every environment's changes to its branch in one commit.
//!
//! An [`Engine`] is built from one config and is immutable: a reload builds a new engine while
//! a cycle still running on the old one finishes with the config it started with. What must
//! outlive a reload (metrics, the metadata cache, the status store) is passed in as [`Shared`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::{Mutex, Semaphore};

mod cluster;
mod propose;
mod recheck;

pub use super::report::{BranchReport, Check, CheckError, Chosen, Report};

use super::fault;
use super::metrics::DaemonMetrics;
use super::safety;
use crate::config::{AgeFrom, Config, Deployment, Image, Tags, WriteMode};
use crate::poll::{self, Cycle, Gate};
use crate::registry::{self, MetadataCache, Registries, TokenStore, Tuning};
use crate::select::Strategy;
use crate::state::{FirstSeen, Holds, RequestStore, RevertHold, StatusStore, now};
use crate::writeback::{self, Desired, ImageChange, Mirror, Outcome};

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
    mirrors: Arc<Mutex<BTreeMap<String, MirrorSlot>>>,
    /// Forge API clients by repository name (they keep tokens), made on first use.
    forges: Arc<std::sync::Mutex<BTreeMap<String, Arc<crate::forge::Client>>>>,
    /// Why each image was last left as it is, so a reason repeated every cycle is logged at
    /// INFO once.
    said: Arc<std::sync::Mutex<BTreeMap<(String, String), String>>>,
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

/// How many registry polls run at once, per registry.
const PER_REGISTRY: usize = 4;
/// How many checks of one cycle are under way at once (most wait for their registry's turn).
const POLLS_AT_ONCE: usize = 64;
/// The longest one image's poll may take once it has its registry's turn.
pub const POLL_DEADLINE: Duration = Duration::from_secs(120);

pub struct Engine {
    pub config: Arc<Config>,
    /// Environments in the order they are written (promotion sources first).
    env_order: Vec<String>,
    registries: Registries,
    limits: BTreeMap<String, Arc<Semaphore>>,
    shared: Shared,
}

impl Engine {
    pub fn new(config: Arc<Config>, shared: &Shared) -> Result<Engine, String> {
        let registries = Registries::from_config(
            &config,
            shared.tuning.clone(),
            shared.registry_metrics.clone(),
            shared.cache.clone(),
            shared.tokens.clone(),
        )
        .map_err(|e| e.to_string())?;
        let limits = config
            .images
            .values()
            .filter_map(|i| registries.for_image(i))
            .map(|c| (c.name().to_string(), Arc::new(Semaphore::new(PER_REGISTRY))))
            .collect();
        Ok(Engine {
            env_order: safety::env_order(&config),
            config,
            registries,
            limits,
            shared: shared.clone(),
        })
    }

    pub fn registries(&self) -> &Registries {
        &self.registries
    }

    fn limit(&self, image: &Image) -> Option<Arc<Semaphore>> {
        let client = self.registries.for_image(image)?;
        self.limits.get(client.name()).cloned()
    }

    /// Checks `aliases` (all images when empty) and, unless `dry_run`, writes what changed.
    pub async fn cycle(&self, aliases: &[String], dry_run: bool) -> Report {
        let images: Vec<&Image> = self
            .config
            .images
            .values()
            .filter(|i| aliases.is_empty() || aliases.contains(&i.alias))
            .collect();
        let started = std::time::Instant::now();
        let handover = self.shared.handover.get();
        let holds = match handover {
            None => Holds::read(&self.shared.state_dir),
            Some(h) => match h
                .prepare(&images, &self.shared.status, &self.shared.seen)
                .await
            {
                Ok(holds) => holds,
                Err(e) => return self.refused(&images, &format!("cluster state: {e}")),
            },
        };
        self.lift_released(&holds);
        let cycle = Cycle::new();
        // At most POLLS_AT_ONCE checks exist at a time: a check's future is kilobytes, and a
        // first round can put thousands of images in one cycle.
        // Plain loops, not closures: a closure over these borrows makes the cycle's future
        // lose `Send`, which spawning it needs.
        let mut pairs: Vec<(&Image, &Deployment)> = Vec::new();
        for image in &images {
            for deployment in &image.deployments {
                pairs.push((image, deployment));
            }
        }
        let mut pending = pairs.into_iter();
        let mut running = futures_util::stream::FuturesUnordered::new();
        let mut checks: Vec<Check> = Vec::new();
        loop {
            while running.len() < POLLS_AT_ONCE {
                let Some((image, deployment)) = pending.next() else {
                    break;
                };
                if self.still_owned(image) {
                    running.push(self.check(&cycle, &holds, image, deployment));
                }
            }
            match running.next().await {
                Some(check) => checks.push(check),
                None => break,
            }
        }
        let branches = self.write(&checks, &holds, dry_run).await;
        let took = started.elapsed();
        self.shared.metrics.cycle(took);
        let updated: usize = branches
            .iter()
            .filter_map(|b| b.result.as_ref().ok())
            .map(|o| o.applied.len())
            .sum();
        let failed = checks.iter().filter(|c| c.result.is_err()).count()
            + branches
                .iter()
                .map(|b| b.result.as_ref().map_or(1, |o| o.failed.len()))
                .sum::<usize>();
        tracing::info!(
            checked = checks.len(),
            updated,
            failed,
            seconds = format!("{:.1}", took.as_secs_f64()),
            "cycle done"
        );
        if let Some(h) = handover
            && !dry_run
        {
            h.publish(&images, &self.shared.status, &self.shared.seen)
                .await;
        }
        self.shared.save_due();
        let report = Report { checks, branches };
        if !dry_run {
            super::notify::send(&self.config, &report).await;
        }
        report
    }

    /// Whether this replica owns `image` now (always, outside a cluster).
    fn still_owned(&self, image: &Image) -> bool {
        match self.shared.members.get() {
            Some(members) => members.borrow().owns(&image.reference.repository()),
            None => true,
        }
    }

    /// A cycle that cannot decide anything: each check fails with `why`, nothing is written.
    fn refused(&self, images: &[&Image], why: &str) -> Report {
        tracing::error!(error = %why, "cycle skipped: nothing is checked or written");
        let mut checks = Vec::new();
        for image in images {
            for d in &image.deployments {
                self.shared
                    .metrics
                    .checked(&image.alias, &d.environment, false);
                self.shared
                    .status
                    .update(&image.alias, &d.environment, |s| {
                        s.last_error = Some(why.to_string())
                    });
                checks.push(Check {
                    alias: image.alias.clone(),
                    environment: d.environment.clone(),
                    result: Err(CheckError::Refused(why.to_string())),
                });
            }
        }
        Report {
            checks,
            branches: Vec::new(),
        }
    }

    /// Revert holds a person released with `image-updater release`.
    fn lift_released(&self, holds: &Holds) {
        for (alias, envs) in &holds.lifted {
            for (env, lift) in envs {
                self.shared.status.update(alias, env, |s| {
                    if s.held.as_ref().is_some_and(|h| lift.covers(h)) {
                        tracing::info!(image = %alias, environment = %env, value = %lift.value, "revert hold released");
                        s.held = None;
                        // Otherwise the branch's value would read as the same revert again.
                        s.written = None;
                    }
                });
            }
        }
    }

    async fn check(
        &self,
        cycle: &Cycle,
        holds: &Holds,
        image: &Image,
        deployment: &Deployment,
    ) -> Check {
        let (alias, env) = (image.alias.clone(), deployment.environment.clone());
        // A panic in one poll (a bug meeting a hostile answer) fails that image only.
        let result = std::panic::AssertUnwindSafe(self.choose(cycle, holds, image, deployment))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| Err(CheckError::Panicked(fault::panic_text(&*panic))))
            // Every tag's verdict is for `test`; a cycle need not keep it until it ends.
            .map(|chosen| Chosen {
                choice: None,
                ..chosen
            });
        self.shared.metrics.checked(&alias, &env, result.is_ok());
        let was_unverified = self.shared.status.get(&alias, &env).unverified;
        self.shared.status.update(&alias, &env, |s| match &result {
            Ok(chosen) => {
                s.last_check = Some(jiff::Timestamp::now());
                s.candidate = chosen
                    .desired
                    .as_ref()
                    .or(chosen.held_back.as_ref())
                    .map(Desired::describe);
                s.waiting = chosen.waiting.clone();
                s.unverified =
                    (!chosen.unverified.is_empty()).then(|| chosen.unverified.join("; "));
                s.last_error = None;
            }
            Err(e) => s.last_error = Some(e.to_string()),
        });
        // Signature failures are news once, not every poll.
        if let Ok(chosen) = &result
            && !chosen.unverified.is_empty()
        {
            let now = chosen.unverified.join("; ");
            if was_unverified.as_deref() != Some(now.as_str()) {
                tracing::warn!(image = %alias, environment = %env, "not eligible under the verify rules: {now}");
            }
        }
        match &result {
            Err(e) => {
                tracing::warn!(image = %alias, environment = %env, error = %e, "check failed")
            }
            Ok(Chosen {
                waiting: Some(why), ..
            }) => {
                tracing::debug!(image = %alias, environment = %env, waiting = %why, "not updating yet")
            }
            Ok(_) => {}
        }
        Check {
            alias,
            environment: env,
            result,
        }
    }

    /// The decision for one image in one environment, as the daemon makes it: a hold, a
    /// promotion, or a poll of the registry under the environment's policy and safety rules.
    /// `image-updater test ALIAS --env ENV` calls this too, so what it prints is what the
    /// daemon would do.
    pub async fn choose(
        &self,
        cycle: &Cycle,
        holds: &Holds,
        image: &Image,
        deployment: &Deployment,
    ) -> Result<Chosen, CheckError> {
        let (alias, env) = (&image.alias, &deployment.environment);
        let hold = holds.active(alias, env).map(|hold| {
            let until = hold.until.as_deref().unwrap_or("released");
            let why = hold
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            format!("held by `image-updater hold` until {until}{why}")
        });
        if let Some(from) = &deployment.safety.promote_from {
            return Ok(Chosen {
                promote_from: hold.is_none().then(|| from.clone()),
                waiting: hold,
                ..Chosen::default()
            });
        }
        let client = self
            .registries
            .for_image(image)
            .ok_or_else(|| CheckError::NoClient(image.reference.to_string()))?;
        // The semaphores live as long as the engine, and are never closed.
        let _permit = match self.limit(image) {
            Some(s) => s.acquire_owned().await.ok(),
            None => None,
        };
        // The deadline counts from here: waiting for the registry's turn is not the poll's
        // fault, but a poll that hangs once it has its turn is abandoned.
        let polled =
            match tokio::time::timeout(POLL_DEADLINE, self.poll(cycle, client, image, deployment))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(CheckError::Deadline(POLL_DEADLINE.as_secs())),
            };
        // A hold still polls, so `status` shows what it keeps back; it writes nothing.
        match hold {
            Some(waiting) => {
                let polled = polled.unwrap_or_default();
                Ok(Chosen {
                    waiting: Some(waiting),
                    held_back: polled.desired,
                    reason: polled.reason,
                    digest: polled.digest,
                    choice: polled.choice,
                    ..Chosen::default()
                })
            }
            None => polled,
        }
    }

    /// The registry's part of a check: tags, digests and the selection, under a deadline.
    async fn poll(
        &self,
        cycle: &Cycle,
        client: &registry::Client,
        image: &Image,
        deployment: &Deployment,
    ) -> Result<Chosen, CheckError> {
        let (alias, env) = (&image.alias, &deployment.environment);
        fault::maybe_panic(alias);
        // A digest that is written must be the tag's digest now; others may be remembered.
        let reuse_digests = image.tags == Tags::Immutable && !deployment.safety.pin_digest;
        let repository = image.reference.path.clone();
        let desired = |tag: String, digest: Option<String>| Desired {
            repository: image.reference.repository(),
            written: image.reference.familiar_repository(),
            tag: Some(tag),
            digest,
            replaces: image.replaces.clone(),
        };
        if let Some(pin) = &deployment.safety.pin {
            let tags = cycle.tags(client, &repository).await?;
            if !tags.iter().any(|t| t == pin) {
                return Err(CheckError::PinMissing {
                    tag: pin.clone(),
                    repository: image.reference.repository(),
                });
            }
            // A verified digest is the tag's digest now, never one remembered (see Gate).
            let reuse = reuse_digests && deployment.verify.is_none();
            let digest = cycle.digest(client, &repository, pin, reuse).await?;
            if let Some(why) = self.unverified(client, image, deployment, &digest).await? {
                return Ok(Chosen {
                    reason: "pinned in the config".into(),
                    waiting: Some(format!("pinned tag {pin}: {why}")),
                    digest: Some(digest),
                    ..Chosen::default()
                });
            }
            let written_digest = deployment.safety.pin_digest.then(|| digest.clone());
            return Ok(Chosen {
                desired: Some(desired(pin.clone(), written_digest)),
                reason: "pinned in the config".into(),
                digest: Some(digest),
                ..Chosen::default()
            });
        }
        let tags = cycle.tags(client, &repository).await?;
        let repository_name = image.reference.repository();
        self.shared.seen.observe(&repository_name, &tags);
        let not_yet = safety::min_age(deployment, || self.shared.seen.sightings(&repository_name));
        let status = self.shared.status.get(alias, env);
        let held_reason = status.held.as_ref().map(|h| {
            format!(
                "held: {} was reverted on the branch (to {}) {}",
                h.value, h.found, h.since
            )
        });
        let gate = Gate {
            not_yet: not_yet.as_deref(),
            needs_created: deployment.safety.min_age.is_some()
                && deployment.safety.age_from == AgeFrom::Created,
            held: status
                .held
                .as_ref()
                .zip(held_reason.as_deref())
                .map(|(h, r)| (h.tag.as_str(), r)),
            reuse_digests,
            verify: deployment
                .verify
                .as_deref()
                .map(|rules| (&*self.shared.verifier, rules)),
        };
        let choice = poll::choose_gated(
            client,
            cycle,
            &repository,
            &deployment.policy,
            &deployment.platforms,
            &gate,
        )
        .await?;
        let Some(i) = choice.selection.selected else {
            // Say why the best tag is out when a safety rule took it.
            let waiting = choice
                .candidates
                .iter()
                .zip(&choice.selection.verdicts)
                .find(|(c, _)| c.unavailable.as_ref().is_some_and(|u| u.why.is_waiting()))
                .map(|(c, v)| format!("{}: {}", c.tag, v.reason));
            let unverified = unverified_of(&choice);
            return Ok(Chosen {
                reason: "no tag passed the policy".into(),
                waiting: waiting.or_else(|| unverified.first().cloned()),
                unverified,
                choice: Some(Arc::new(choice)),
                ..Chosen::default()
            });
        };
        let winner = &choice.candidates[i];
        let tracked = matches!(deployment.policy.strategy, Strategy::Digest { .. });
        let written_digest = (tracked || deployment.safety.pin_digest)
            .then(|| choice.digest.clone())
            .flatten();
        let want = desired(winner.tag.clone(), written_digest);
        let guard = safety::guard(
            &deployment.policy,
            choice.candidates.clone(),
            &want,
            &status,
            deployment.safety.allow_downgrade,
        );
        Ok(Chosen {
            desired: Some(want),
            reason: choice.selection.verdicts[i].reason.clone(),
            digest: choice.digest.clone(),
            source: choice.source.clone(),
            unverified: unverified_of(&choice),
            guard: Some(guard),
            choice: Some(Arc::new(choice)),
            ..Chosen::default()
        })
    }

    /// Why `digest` may not be written under `deployment`'s `verify` rules, or `None` when it
    /// may (or there are none). A check that cannot be made is an error, never a pass.
    async fn unverified(
        &self,
        client: &registry::Client,
        image: &Image,
        deployment: &Deployment,
        digest: &str,
    ) -> Result<Option<String>, CheckError> {
        let Some(rules) = &deployment.verify else {
            return Ok(None);
        };
        match self
            .shared
            .verifier
            .check(client, &image.reference.path, digest, rules)
            .await
            .map_err(|e| match e {
                crate::verify::VerifyError::Registry(e) => CheckError::Registry(e),
                other => CheckError::Verify(other.to_string()),
            })? {
            crate::verify::Verdict::Verified(_) => Ok(None),
            crate::verify::Verdict::Rejected(why) => Ok(Some(why)),
        }
    }

    /// A promotion checked against the target environment's own `verify` rules: what soaked
    /// in the source was verified under the source's rules, which may be weaker.
    pub async fn verify_promotion(
        &self,
        image: &Image,
        deployment: &Deployment,
        resolved: Chosen,
    ) -> Chosen {
        let (Some(_), Some(desired)) = (&deployment.verify, &resolved.desired) else {
            return resolved;
        };
        let waiting = |why: String| Chosen {
            waiting: Some(why),
            ..Chosen::default()
        };
        let Some(client) = self.registries.for_image(image) else {
            return waiting(format!("no registry client for {}", image.reference));
        };
        let digest = match (&resolved.digest, &desired.tag) {
            (Some(d), _) => d.clone(),
            (None, Some(tag)) => match client.resolve(&image.reference.path, tag).await {
                Ok(d) => d,
                Err(e) => return waiting(format!("cannot verify the promoted tag: {e}")),
            },
            (None, None) => return waiting("cannot verify a promotion without a tag".into()),
        };
        match self.unverified(client, image, deployment, &digest).await {
            Ok(None) => resolved,
            Ok(Some(why)) => waiting(format!("not promoted: {why}")),
            Err(e) => waiting(format!("cannot verify the promotion: {e}")),
        }
    }

    /// Resolves a promotion from the source environment's state as of now.
    pub fn promote(&self, alias: &str, deployment: &Deployment, from: &str) -> Chosen {
        let image = &self.config.images[alias];
        let source = self.shared.status.get(alias, from);
        match safety::promotion(deployment, from, &source, image) {
            Ok(p) => {
                let status = self.shared.status.get(alias, &deployment.environment);
                let guard = safety::guard(
                    &deployment.policy,
                    Vec::new(),
                    &p.desired,
                    &status,
                    deployment.safety.allow_downgrade,
                );
                Chosen {
                    reason: format!("promoted from {from}"),
                    desired: Some(p.desired),
                    digest: p.digest,
                    guard: Some(guard),
                    ..Chosen::default()
                }
            }
            Err(waiting) => Chosen {
                waiting: Some(waiting),
                ..Chosen::default()
            },
        }
    }

    /// Groups the chosen tags by branch and writes each branch once, sources of promotions
    /// first. Images whose value another writer changed while the branch was being written
    /// are decided again, once, against fresh registry answers and the branch as it is now.
    async fn write(&self, checks: &[Check], holds: &Holds, dry_run: bool) -> Vec<BranchReport> {
        let mut by_env: BTreeMap<&str, Vec<&Check>> = BTreeMap::new();
        for check in checks {
            if check.result.is_ok() {
                by_env
                    .entry(check.environment.as_str())
                    .or_default()
                    .push(check);
            }
        }
        let mut reports = Vec::new();
        for env_name in &self.env_order {
            let Some(env_checks) = by_env.get(env_name.as_str()) else {
                continue;
            };
            let mut changes: Vec<(ImageChange, Chosen)> = Vec::new();
            for check in env_checks {
                changes.extend(self.change(check).await);
            }
            let changes = self.moved_before_writing(env_name, changes, holds).await;
            let checked: Vec<String> = env_checks.iter().map(|c| c.alias.clone()).collect();
            let report = self
                .write_changes(env_name, changes, &checked, dry_run)
                .await;
            let superseded: Vec<String> = report
                .iter()
                .filter_map(|r| r.result.as_ref().ok())
                .flat_map(|o| o.superseded.iter().map(|s| s.alias.clone()))
                .collect();
            reports.extend(report);
            if superseded.is_empty() {
                continue;
            }
            let again = self.decide_again(env_name, &superseded, holds).await;
            reports.extend(
                self.write_changes(env_name, again, &superseded, dry_run)
                    .await,
            );
        }
        reports
    }

    /// `aliases` checked again in `env_name`, with registry answers read from now on, and the
    /// changes those checks ask for.
    async fn decide_again(
        &self,
        env_name: &str,
        aliases: &[String],
        holds: &Holds,
    ) -> Vec<(ImageChange, Chosen)> {
        let cycle = Cycle::new();
        let mut again = Vec::new();
        for alias in aliases {
            let image = &self.config.images[alias];
            let Some(deployment) = image
                .deployments
                .iter()
                .find(|d| d.environment == *env_name)
            else {
                continue;
            };
            let check = self.check(&cycle, holds, image, deployment).await;
            again.extend(self.change(&check).await);
        }
        again
    }

    /// Before writing digests: the changes whose guard finds a value on the branch that
    /// another writer put there after they were decided ([`writeback::Decision::Moved`]) are
    /// decided again now, so the branch still gets one commit. The look is a dry run on the
    /// mirror's fetch, which the write then shares; a race after it is caught by the write
    /// itself. (Tags rank, so only a tag missing from the decision's list is ever moved, and
    /// that rare case is decided again after the write.)
    async fn moved_before_writing(
        &self,
        env_name: &str,
        changes: Vec<(ImageChange, Chosen)>,
        holds: &Holds,
    ) -> Vec<(ImageChange, Chosen)> {
        if changes.iter().all(|(c, _)| c.desired.digest.is_none()) {
            return changes;
        }
        let env = &self.config.environments[env_name];
        let repo = &self.config.repositories[&env.repository];
        let plain: Vec<ImageChange> = changes.iter().map(|(c, _)| c.clone()).collect();
        // A failure here is the write's to report.
        let Ok(looked) = self.write_branch(repo, env, &plain, true).await else {
            return changes;
        };
        if looked.superseded.is_empty() {
            return changes;
        }
        let mut aliases = Vec::new();
        for moved in &looked.superseded {
            self.shared.status.update(&moved.alias, env_name, |s| {
                s.current = Some(moved.current.clone());
            });
            aliases.push(moved.alias.clone());
        }
        let mut kept: Vec<(ImageChange, Chosen)> = changes
            .into_iter()
            .filter(|(c, _)| !aliases.contains(&c.alias))
            .collect();
        kept.extend(self.decide_again(env_name, &aliases, holds).await);
        kept
    }

    /// The change a successful check asks for in its environment, with what was chosen;
    /// promotions are resolved now, after their source environment was written.
    async fn change(&self, check: &Check) -> Option<(ImageChange, Chosen)> {
        let chosen = check.result.as_ref().ok()?;
        let image = &self.config.images[&check.alias];
        let deployment = image
            .deployments
            .iter()
            .find(|d| d.environment == check.environment)
            .expect("checked deployments exist");
        let chosen = match &chosen.promote_from {
            Some(from) => {
                let resolved = self.promote(&check.alias, deployment, from);
                let resolved = self.verify_promotion(image, deployment, resolved).await;
                self.shared
                    .status
                    .update(&check.alias, &check.environment, |s| {
                        s.candidate = resolved.desired.as_ref().map(Desired::describe);
                        s.waiting = resolved.waiting.clone();
                    });
                resolved
            }
            None => chosen.clone(),
        };
        let desired = chosen.desired.clone()?;
        Some((
            ImageChange {
                alias: check.alias.clone(),
                desired,
                targets: deployment.targets.clone(),
                guard: chosen.guard.clone(),
            },
            chosen,
        ))
    }

    /// Writes one environment's changes: those pushed in one commit to its branch, those
    /// proposed in its pull request (the environment's `write`, or the image's own).
    async fn write_changes(
        &self,
        env_name: &str,
        mut changes: Vec<(ImageChange, Chosen)>,
        checked: &[String],
        dry_run: bool,
    ) -> Vec<BranchReport> {
        let handover = self.shared.handover.get();
        let shared_request = match handover {
            Some(h) if changes.is_empty() => match self.request_elsewhere(h, env_name).await {
                Ok(open) => open,
                Err(e) => return self.not_written(env_name, &changes, e.to_string()),
            },
            _ => false,
        };
        // In a cluster, one replica writes a branch at a time. A dry run writes nothing, and
        // a cycle with nothing to write or to look after needs no lock.
        let writes =
            !changes.is_empty() || self.shared.requests.get(env_name).is_some() || shared_request;
        let held = match self.shared.cluster.get() {
            Some(session) if writes && !dry_run => {
                let session = session.borrow().clone();
                match self.lock_branch(env_name, session).await {
                    Ok(held) => Some(held),
                    Err(e) => return self.not_written(env_name, &changes, e),
                }
            }
            _ => None,
        };
        let shares_request = handover.filter(|_| writes && !dry_run);
        let lent = match shares_request {
            None => None,
            Some(h) => match self
                .take_up_request(h, env_name, checked, &mut changes)
                .await
            {
                Ok(lent) => Some(lent),
                Err(e) => {
                    if let Some(held) = held {
                        held.release().await;
                    }
                    return self.not_written(env_name, &changes, e.to_string());
                }
            },
        };
        let reports = self.write_locked(env_name, changes, checked, dry_run).await;
        if let (Some(h), Some(lent)) = (shares_request, lent) {
            self.hand_back_request(h, env_name, lent).await;
        }
        if let Some(held) = held {
            held.release().await;
        }
        reports
    }

    /// Changes that could not be written this cycle, reported as failed.
    fn not_written(
        &self,
        env_name: &str,
        changes: &[(ImageChange, Chosen)],
        why: String,
    ) -> Vec<BranchReport> {
        let env = &self.config.environments[env_name];
        tracing::error!(branch = %env.branch, error = %why, "branch update skipped");
        for (c, _) in changes {
            self.shared.metrics.write_failed(&c.alias, &env.name);
            self.shared
                .status
                .update(&c.alias, &env.name, |s| s.last_error = Some(why.clone()));
        }
        vec![BranchReport {
            repository: env.repository.clone(),
            environment: env.name.clone(),
            branch: env.branch.clone(),
            result: Err(why),
        }]
    }

    async fn write_locked(
        &self,
        env_name: &str,
        changes: Vec<(ImageChange, Chosen)>,
        checked: &[String],
        dry_run: bool,
    ) -> Vec<BranchReport> {
        let env = &self.config.environments[env_name];
        let mode = |alias: &str| {
            self.config.images[alias]
                .deployments
                .iter()
                .find(|d| d.environment == env.name)
                .and_then(|d| d.write)
                .unwrap_or(env.write)
        };
        let mut changes = self.recheck_verified(env_name, changes).await;
        // Polls finish in any order; commits list images by alias.
        changes.sort_by(|a, b| a.0.alias.cmp(&b.0.alias));
        let (proposed, pushed): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|(c, _)| mode(&c.alias) == WriteMode::PullRequest);
        let mut reports = Vec::new();
        // Pushed first: the request is then rebuilt on the branch that holds them.
        if !pushed.is_empty() {
            reports.push(self.push_changes(env_name, pushed, dry_run).await);
        }
        let proposing: Vec<String> = checked
            .iter()
            .filter(|a| mode(a) == WriteMode::PullRequest)
            .cloned()
            .collect();
        // Without changes, an open request is still looked after (merged, closed, no longer
        // wanted), and one a person closed is watched for being reopened.
        let closed_by_person = proposing.iter().any(|alias| {
            self.shared
                .status
                .get(alias, &env.name)
                .held
                .is_some_and(|h| h.request.is_some())
        });
        if !proposed.is_empty()
            || (!proposing.is_empty()
                && (self.shared.requests.get(env_name).is_some() || closed_by_person))
        {
            reports.push(
                self.propose_changes(env_name, proposed, &proposing, dry_run)
                    .await,
            );
        }
        reports
    }

    async fn propose_changes(
        &self,
        env_name: &str,
        changes: Vec<(ImageChange, Chosen)>,
        checked: &[String],
        dry_run: bool,
    ) -> BranchReport {
        let env = &self.config.environments[env_name];
        let repo = &self.config.repositories[&env.repository];
        let (changes, chosen): (Vec<ImageChange>, Vec<Chosen>) = changes.into_iter().unzip();
        let chosen_by: BTreeMap<&str, &Chosen> = changes
            .iter()
            .map(|c| c.alias.as_str())
            .zip(&chosen)
            .collect();
        let aliases: Vec<String> = changes.iter().map(|c| c.alias.clone()).collect();
        let result = self
            .propose(env, repo, changes.clone(), &chosen_by, checked, dry_run)
            .await;
        match &result {
            Ok(outcome) => {
                // What the branch holds is unchanged until the request is merged.
                let pending = Outcome {
                    applied: Vec::new(),
                    commit: None,
                    ..outcome.clone()
                };
                self.record(env, repo, &changes, &chosen_by, &pending, dry_run);
                for a in &outcome.applied {
                    self.shared.status.update(&a.alias, &env.name, |s| {
                        s.current = Some(a.old.clone());
                    });
                }
                if dry_run {
                    for a in &outcome.applied {
                        tracing::info!(image = %a.alias, environment = %env.name, old = %a.old, new = %a.new, "would propose (dry run)");
                    }
                }
            }
            Err(e) => {
                tracing::error!(repository = %repo.name, branch = %env.branch, error = %e, "pull request update failed");
                for alias in &aliases {
                    self.shared.metrics.write_failed(alias, &env.name);
                    self.shared
                        .status
                        .update(alias, &env.name, |s| s.last_error = Some(e.clone()));
                }
            }
        }
        BranchReport {
            repository: repo.name.clone(),
            environment: env.name.clone(),
            branch: env.pull_request.branch.clone(),
            result,
        }
    }

    /// Writes changes to the environment's branch in one commit, and records the outcome.
    async fn push_changes(
        &self,
        env_name: &str,
        changes: Vec<(ImageChange, Chosen)>,
        dry_run: bool,
    ) -> BranchReport {
        let env = &self.config.environments[env_name];
        let repo = &self.config.repositories[&env.repository];
        let (changes, chosen): (Vec<ImageChange>, Vec<Chosen>) = changes.into_iter().unzip();
        let chosen: BTreeMap<&str, &Chosen> = changes
            .iter()
            .map(|c| c.alias.as_str())
            .zip(&chosen)
            .collect();
        let result = self.write_branch(repo, env, &changes, dry_run).await;
        match &result {
            Ok(outcome) => self.record(env, repo, &changes, &chosen, outcome, dry_run),
            Err(e) => {
                tracing::error!(repository = %repo.name, branch = %env.branch, error = %e, "branch update failed; nothing was pushed");
                self.shared
                    .metrics
                    .pushed(&repo.name, &env.branch, false, 0);
                for c in &changes {
                    self.shared.metrics.write_failed(&c.alias, &env.name);
                    self.shared
                        .status
                        .update(&c.alias, &env.name, |s| s.last_error = Some(e.clone()));
                }
            }
        }
        BranchReport {
            repository: repo.name.clone(),
            environment: env.name.clone(),
            branch: env.branch.clone(),
            result,
        }
    }

    /// Logs, counts and remembers what a branch update did.
    fn record(
        &self,
        env: &crate::config::Environment,
        repo: &crate::config::Repository,
        changes: &[ImageChange],
        chosen: &BTreeMap<&str, &Chosen>,
        outcome: &Outcome,
        dry_run: bool,
    ) {
        // What the branch holds now, for promotion and `status`.
        for c in changes {
            let current = if let Some(a) = outcome.applied.iter().find(|a| a.alias == c.alias) {
                if dry_run {
                    a.old.clone()
                } else {
                    a.new.clone()
                }
            } else if let Some(s) = outcome.skipped.iter().find(|s| s.alias == c.alias) {
                s.current.clone()
            } else if outcome.failed.iter().any(|f| f.alias == c.alias) {
                continue;
            } else if let Some(moved) = outcome.superseded.iter().find(|s| s.alias == c.alias) {
                // Seen now: a decision from registry answers read after this may replace it.
                self.shared.status.update(&c.alias, &env.name, |s| {
                    s.waiting =
                        Some("another writer changed the value meanwhile; deciding again".into());
                    s.current = Some(moved.current.clone());
                });
                continue;
            } else {
                c.desired.describe()
            };
            self.shared
                .status
                .update(&c.alias, &env.name, |s| s.current = Some(current));
        }
        for a in &outcome.applied {
            if dry_run {
                tracing::info!(image = %a.alias, environment = %env.name, old = %a.old, new = %a.new, "would update (dry run)");
                continue;
            }
            let choice = chosen.get(a.alias.as_str());
            let reason = choice.map(|c| c.reason.as_str()).unwrap_or_default();
            let commit = outcome.commit.map(|c| c.to_string()).unwrap_or_default();
            self.shared.metrics.updated(&a.alias, &env.name);
            self.shared.status.update(&a.alias, &env.name, |s| {
                s.last_update = Some(format!("{} -> {}", a.old, a.new));
                s.last_commit = Some(commit.clone());
                s.last_update_at = Some(now());
                s.written = Some(a.new.clone());
                s.written_digest = choice.and_then(|c| c.digest.clone());
                s.waiting = None;
                if s.held.is_some() {
                    tracing::info!(image = %a.alias, environment = %env.name, "a newer tag replaced the reverted one; hold lifted");
                    s.held = None;
                }
            });
            // Logged last: whoever reads the log then sees metrics and status agree.
            tracing::info!(image = %a.alias, environment = %env.name, branch = %env.branch, old = %a.old, new = %a.new, %commit, reason, "updated");
        }
        for sk in &outcome.skipped {
            let desired = changes
                .iter()
                .find(|c| c.alias == sk.alias)
                .map(|c| c.desired.clone());
            if sk.reverted && !dry_run {
                tracing::warn!(image = %sk.alias, environment = %env.name, branch = %env.branch, current = %sk.current, "{}", sk.reason);
                self.shared.metrics.reverted(&sk.alias, &env.name);
                self.shared.status.update(&sk.alias, &env.name, |s| {
                    s.held = desired.map(|d| {
                        Box::new(RevertHold {
                            value: d.describe(),
                            tag: d.tag.clone().unwrap_or_default(),
                            found: sk.current.clone(),
                            since: now(),
                            request: None,
                        })
                    });
                    s.waiting = Some(sk.reason.clone());
                });
            } else {
                // Said once at INFO; while the reason stays the same, again only at DEBUG.
                let repeated = self
                    .shared
                    .said
                    .lock()
                    .expect("said lock")
                    .insert((sk.alias.clone(), env.name.clone()), sk.reason.clone())
                    .is_some_and(|before| before == sk.reason);
                if repeated {
                    tracing::debug!(image = %sk.alias, environment = %env.name, current = %sk.current, "not updating: {}", sk.reason);
                } else {
                    tracing::info!(image = %sk.alias, environment = %env.name, current = %sk.current, "not updating: {}", sk.reason);
                }
                self.shared.status.update(&sk.alias, &env.name, |s| {
                    s.waiting = Some(sk.reason.clone())
                });
            }
        }
        for f in &outcome.failed {
            tracing::error!(image = %f.alias, environment = %env.name, file = %f.file.display(), error = %f.message, "cannot write the update");
            self.shared.metrics.write_failed(&f.alias, &env.name);
            self.shared.status.update(&f.alias, &env.name, |s| {
                s.last_error = Some(format!("{}: {}", f.file.display(), f.message));
            });
        }
        if !dry_run && (outcome.commit.is_some() || outcome.retries > 0) {
            self.shared
                .metrics
                .pushed(&repo.name, &env.branch, true, outcome.retries);
        }
    }

    /// The repository's mirror, opened if need be and held: one branch update per repository
    /// at a time, as they share it.
    async fn mirror(
        &self,
        repo: &crate::config::Repository,
    ) -> Result<tokio::sync::OwnedMutexGuard<Option<Mirror>>, String> {
        let slot = {
            let mut mirrors = self.shared.mirrors.lock().await;
            mirrors.entry(repo.name.clone()).or_default().clone()
        };
        let mut mirror = slot.lock_owned().await;
        if mirror.is_none() {
            *mirror = Some(
                Mirror::open(&self.shared.state_dir, repo)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(mirror)
    }

    async fn write_branch(
        &self,
        repo: &crate::config::Repository,
        env: &crate::config::Environment,
        changes: &[ImageChange],
        dry_run: bool,
    ) -> Result<Outcome, String> {
        let mut mirror = self.mirror(repo).await?;
        let m = mirror.as_ref().expect("opened by mirror()");
        let result = writeback::write_branch(m, repo, env, changes, dry_run).await;
        if result.is_err() {
            // Credentials or the url may have changed: open afresh next time.
            *mirror = None;
        }
        result.map_err(|e| e.to_string())
    }
}

/// `tag: why` for each tag the `verify` rules kept from winning.
fn unverified_of(choice: &poll::Choice) -> Vec<String> {
    choice
        .unverified
        .iter()
        .map(|(tag, why)| format!("{tag}: {why}"))
        .collect()
}
