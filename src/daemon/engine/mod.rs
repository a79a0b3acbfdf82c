//! One cycle: poll the registries for a set of images, choose a tag per environment, and write
//! every environment's changes to its branch in one commit.
//!
//! An [`Engine`] is built from one config and is immutable: a reload builds a new engine while
//! a cycle still running on the old one finishes with the config it started with. What must
//! outlive a reload (metrics, the metadata cache, the status store) is passed in as [`Shared`].
//!
//! A cycle is a pipeline, one room a stage:
//! - [`decide`]: poll the registry and choose a tag per environment under its policy, holds
//!   and safety rules, and verify what was chosen (a [`Check`] each);
//! - [`write`]: group the changes by branch, look once more ([`recheck`]), and push them or
//!   propose them ([`propose`]), under the branch's lock in a cluster ([`cluster`]);
//! - [`record`]: what each write did, into the status store, the metrics and the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

mod cluster;
mod decide;
mod propose;
mod recheck;
mod record;
mod shared;
mod write;

pub use super::report::{BranchError, BranchReport, Check, CheckError, Chosen, Report, Wait};
pub use shared::{SAVE_EVERY, Shared};

use super::fault;
use super::safety;
use crate::charts::{ChartRepository, RepositoryError};
use crate::config::{Config, Deployment, Image, Source};
use crate::poll::{Cycle, PushedTag};
use crate::registry::Registries;
use crate::state::Holds;
use crate::writeback::Desired;

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
    /// Chart repositories by url, with the charts read from each index; a repository that
    /// cannot be set up (an unreadable `ca_file`) fails its charts' checks, not the engine.
    indexes: BTreeMap<String, ChartIndexClient>,
    limits: BTreeMap<String, Arc<Semaphore>>,
    shared: Shared,
}

/// A chart repository's client (or why it has none) and the charts read from its index.
type ChartIndexClient = (
    Result<Arc<ChartRepository>, RepositoryError>,
    BTreeSet<String>,
);

/// One client per chart repository the config reads, set up by the first chart of it (in
/// alias order): its credentials, CA and size limit serve every chart of that repository.
fn chart_indexes(config: &Config) -> BTreeMap<String, ChartIndexClient> {
    let mut out: BTreeMap<String, ChartIndexClient> = BTreeMap::new();
    for image in config.images.values() {
        let Source::ChartIndex(index) = &image.source else {
            continue;
        };
        out.entry(index.url.clone())
            .or_insert_with(|| {
                let mut settings = crate::charts::Settings::new(&index.url);
                settings.credentials = index.credentials.clone();
                settings.ca_file = index.ca_file.clone();
                settings.max_index = index.max_index_size;
                (
                    ChartRepository::new(settings).map(Arc::new),
                    BTreeSet::new(),
                )
            })
            .1
            .insert(index.name.clone());
    }
    out
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
            indexes: chart_indexes(&config),
            config,
            registries,
            limits,
            shared: shared.clone(),
        })
    }

    pub fn registries(&self) -> &Registries {
        &self.registries
    }

    /// The chart repositories' requests of this cycle, into the metrics (which outlive the
    /// engine, and so the repositories' clients).
    fn count_chart_requests(&self) {
        for (url, (repository, _)) in &self.indexes {
            let Ok(repository) = repository else { continue };
            for (status, n) in repository.take_requests() {
                self.shared.metrics.chart_requests(url, status, n);
            }
        }
    }

    fn limit(&self, image: &Image) -> Option<Arc<Semaphore>> {
        let client = self.registries.for_image(image)?;
        self.limits.get(client.name()).cloned()
    }

    /// Checks `aliases` (all images when empty) and, unless `dry_run`, writes what changed.
    pub async fn cycle(&self, aliases: &[String], dry_run: bool) -> Report {
        self.cycle_after_pushes(aliases, dry_run, HashMap::new())
            .await
    }

    /// [`Engine::cycle`], knowing the tags push events reported for some of the images, by
    /// alias (see [`Cycle::assumed_tags`]).
    pub async fn cycle_after_pushes(
        &self,
        aliases: &[String],
        dry_run: bool,
        pushed: HashMap<String, Vec<PushedTag>>,
    ) -> Report {
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
        let cycle = Cycle::with_pushes(self.pushes_by_repository(pushed));
        let checks = self.check_all(&cycle, &holds, &images).await;
        self.count_chart_requests();
        let branches = self.write(&checks, &holds, dry_run).await;
        let took = started.elapsed();
        self.shared.metrics.cycle(took);
        log_cycle(&checks, &branches, took);
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

    /// Pushed tags by alias, as the registry and repository they were pushed to.
    fn pushes_by_repository(
        &self,
        pushed: HashMap<String, Vec<PushedTag>>,
    ) -> HashMap<(String, String), Vec<PushedTag>> {
        let mut by_repository: HashMap<(String, String), Vec<PushedTag>> = HashMap::new();
        for (alias, tags) in pushed {
            let Some(image) = self.config.images.get(&alias) else {
                continue;
            };
            let Some(client) = self.registries.for_image(image) else {
                continue;
            };
            by_repository
                .entry((client.name().to_string(), image.reference.path.clone()))
                .or_default()
                .extend(tags);
        }
        by_repository
    }

    /// Every deployment of `images` this replica still owns, checked.
    async fn check_all(&self, cycle: &Cycle, holds: &Holds, images: &[&Image]) -> Vec<Check> {
        // At most POLLS_AT_ONCE checks exist at a time: a check's future is kilobytes, and a
        // first round can put thousands of images in one cycle.
        // Plain loops, not closures: a closure over these borrows makes the cycle's future
        // lose `Send`, which spawning it needs.
        let mut pairs: Vec<(&Image, &Deployment)> = Vec::new();
        for image in images {
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
                    running.push(self.check(cycle, holds, image, deployment));
                }
            }
            match running.next().await {
                Some(check) => checks.push(check),
                None => break,
            }
        }
        checks
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

    pub(super) async fn check(
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
            // Every tag's verdict is for `test`; a cycle need not keep it until it ends. The
            // status page, when it is on, keeps the highest few.
            .inspect(|chosen| {
                if let Some(choice) = &chosen.choice
                    && self.config.ui.is_some()
                {
                    self.shared.explained.keep(&alias, &env, choice);
                }
            })
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
                s.waiting = chosen.waiting.as_ref().map(Wait::to_string);
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
}

/// The cycle's line in the log: how many checks, updates and failures, and how long.
fn log_cycle(checks: &[Check], branches: &[BranchReport], took: Duration) {
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
}
