//! One cycle: poll the registries for a set of images, choose a tag per environment, and write
//! every environment's changes to its branch in one commit.
//!
//! An [`Engine`] is built from one config and is immutable: a reload builds a new engine while
//! a cycle still running on the old one finishes with the config it started with. What must
//! outlive a reload (metrics, the metadata cache, the status store) is passed in as [`Shared`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::{Mutex, Semaphore};

use super::metrics::DaemonMetrics;
use super::state::{StatusStore, now};
use crate::config::{Config, Deployment, Image};
use crate::registry::{self, Cycle, MetadataCache, Registries, Tuning};
use crate::select::Strategy;
use crate::writeback::{self, Desired, ImageChange, Mirror, Outcome};

/// A repository's mirror, opened on first use; `None` until then or after a failure.
type MirrorSlot = Arc<Mutex<Option<Mirror>>>;

/// What survives a config reload.
#[derive(Clone)]
pub struct Shared {
    pub state_dir: PathBuf,
    pub registry_metrics: Arc<registry::Metrics>,
    pub cache: Arc<MetadataCache>,
    pub metrics: Arc<DaemonMetrics>,
    pub status: Arc<StatusStore>,
    /// Mirrors by repository name; each is used by one branch update at a time.
    mirrors: Arc<Mutex<BTreeMap<String, MirrorSlot>>>,
}

impl Shared {
    /// Opens the state dir: the metadata cache and the status store (rebuilt if corrupt).
    pub fn open(state_dir: PathBuf) -> Shared {
        let (cache, loaded) = MetadataCache::open(&state_dir.join("cache/metadata.json"));
        tracing::debug!(?loaded, entries = cache.len(), "metadata cache opened");
        Shared {
            status: Arc::new(StatusStore::open(&state_dir)),
            state_dir,
            registry_metrics: Arc::new(registry::Metrics::default()),
            cache: Arc::new(cache),
            metrics: Arc::new(DaemonMetrics::new()),
            mirrors: Arc::default(),
        }
    }

    /// Forgets the opened mirrors, so the next write reads the repositories' credentials and
    /// urls again (after a reload). A write in progress keeps the mirror it has.
    pub async fn forget_mirrors(&self) {
        self.mirrors.lock().await.clear();
    }

    /// Writes the cache and the status store; failures are logged, the next save tries again.
    pub fn save(&self) {
        if let Err(e) = self.cache.save() {
            tracing::warn!(error = %e, "cannot save the metadata cache");
        }
        if let Err(e) = self.status.save() {
            tracing::warn!(error = %e, "cannot save status.json");
        }
    }
}

/// How many registry polls run at once, per registry.
const PER_REGISTRY: usize = 4;

/// One image in one environment after a check.
#[derive(Debug, Clone)]
pub struct Check {
    pub alias: String,
    pub environment: String,
    pub result: Result<Chosen, String>,
}

#[derive(Debug, Clone)]
pub struct Chosen {
    /// `None` when no tag passed the policy.
    pub desired: Option<Desired>,
    /// Why the winner won, from the selection engine.
    pub reason: String,
}

/// One branch after a cycle.
#[derive(Debug, Clone)]
pub struct BranchReport {
    pub repository: String,
    pub environment: String,
    pub branch: String,
    pub result: Result<Outcome, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
    pub branches: Vec<BranchReport>,
}

impl Report {
    /// Whether any check or write failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.result.is_err())
            || self
                .branches
                .iter()
                .any(|b| b.result.as_ref().map_or(true, |o| !o.failed.is_empty()))
    }
}

pub struct Engine {
    pub config: Arc<Config>,
    registries: Registries,
    limits: BTreeMap<String, Arc<Semaphore>>,
    shared: Shared,
}

impl Engine {
    pub fn new(config: Arc<Config>, shared: &Shared) -> Result<Engine, String> {
        let registries = Registries::from_config(
            &config,
            Tuning::default(),
            shared.registry_metrics.clone(),
            shared.cache.clone(),
        )
        .map_err(|e| e.to_string())?;
        let limits = config
            .images
            .values()
            .filter_map(|i| registries.for_image(i))
            .map(|c| (c.name().to_string(), Arc::new(Semaphore::new(PER_REGISTRY))))
            .collect();
        Ok(Engine {
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
        let cycle = Cycle::new();
        let mut polls = Vec::new();
        for image in &images {
            for deployment in &image.deployments {
                polls.push(self.check(&cycle, image, deployment));
            }
        }
        // A Vec of futures rather than a mapping closure keeps this future Send for spawn.
        let checks: Vec<Check> = futures_util::stream::iter(polls)
            .buffer_unordered(64)
            .collect()
            .await;
        let branches = self.write(&checks, dry_run).await;
        self.shared.metrics.cycle();
        self.shared.save();
        Report { checks, branches }
    }

    async fn check(&self, cycle: &Cycle, image: &Image, deployment: &Deployment) -> Check {
        let (alias, env) = (image.alias.clone(), deployment.environment.clone());
        let result = self.choose(cycle, image, deployment).await;
        self.shared.metrics.checked(&alias, &env, result.is_ok());
        self.shared.status.update(&alias, &env, |s| match &result {
            Ok(chosen) => {
                s.last_check = Some(now());
                s.candidate = chosen.desired.as_ref().map(Desired::describe);
                s.last_error = None;
            }
            Err(e) => s.last_error = Some(e.clone()),
        });
        if let Err(e) = &result {
            tracing::warn!(image = %alias, environment = %env, error = %e, "check failed");
        }
        Check {
            alias,
            environment: env,
            result,
        }
    }

    async fn choose(
        &self,
        cycle: &Cycle,
        image: &Image,
        deployment: &Deployment,
    ) -> Result<Chosen, String> {
        let client = self
            .registries
            .for_image(image)
            .ok_or_else(|| format!("no registry client for {}", image.reference))?;
        let _permit = match self.limit(image) {
            Some(s) => Some(s.acquire_owned().await.map_err(|e| e.to_string())?),
            None => None,
        };
        let repository = image.reference.path.clone();
        let choice = registry::choose(
            client,
            cycle,
            &repository,
            &deployment.policy,
            &deployment.platforms,
        )
        .await
        .map_err(|e| e.to_string())?;
        let Some(i) = choice.selection.selected else {
            return Ok(Chosen {
                desired: None,
                reason: "no tag passed the policy".into(),
            });
        };
        let winner = &choice.candidates[i];
        let tracked = matches!(deployment.policy.strategy, Strategy::Digest { .. });
        let written = image.reference.familiar_repository();
        Ok(Chosen {
            desired: Some(Desired {
                repository: image.reference.repository(),
                written,
                tag: Some(winner.tag.clone()),
                digest: if tracked { choice.digest.clone() } else { None },
            }),
            reason: choice.selection.verdicts[i].reason.clone(),
        })
    }

    /// Groups the chosen tags by branch and writes each branch once.
    async fn write(&self, checks: &[Check], dry_run: bool) -> Vec<BranchReport> {
        let mut by_env: BTreeMap<&str, Vec<(ImageChange, &str)>> = BTreeMap::new();
        for check in checks {
            let Ok(Chosen {
                desired: Some(desired),
                reason,
            }) = &check.result
            else {
                continue;
            };
            let image = &self.config.images[&check.alias];
            let deployment = image
                .deployments
                .iter()
                .find(|d| d.environment == check.environment)
                .expect("checked deployments exist");
            by_env.entry(check.environment.as_str()).or_default().push((
                ImageChange {
                    alias: check.alias.clone(),
                    desired: desired.clone(),
                    targets: deployment.targets.clone(),
                },
                reason.as_str(),
            ));
        }
        let mut reports = Vec::new();
        for (env_name, mut changes) in by_env {
            // Polls finish in any order; commits list images by alias.
            changes.sort_by(|a, b| a.0.alias.cmp(&b.0.alias));
            let env = &self.config.environments[env_name];
            let repo = &self.config.repositories[&env.repository];
            let (changes, reasons): (Vec<ImageChange>, Vec<&str>) = changes.into_iter().unzip();
            let reasons: BTreeMap<&str, &str> = changes
                .iter()
                .map(|c| c.alias.as_str())
                .zip(reasons)
                .collect();
            let result = self.write_branch(repo, env, &changes, dry_run).await;
            match &result {
                Ok(outcome) => {
                    for a in &outcome.applied {
                        if dry_run {
                            tracing::info!(image = %a.alias, environment = %env.name, old = %a.old, new = %a.new, "would update (dry run)");
                            continue;
                        }
                        let reason = reasons.get(a.alias.as_str()).copied().unwrap_or_default();
                        let commit = outcome.commit.map(|c| c.to_string()).unwrap_or_default();
                        tracing::info!(image = %a.alias, environment = %env.name, branch = %env.branch, old = %a.old, new = %a.new, %commit, reason, "updated");
                        self.shared.metrics.updated(&a.alias, &env.name);
                        self.shared.status.update(&a.alias, &env.name, |s| {
                            s.last_update = Some(format!("{} -> {}", a.old, a.new));
                            s.last_commit = Some(commit.clone());
                            s.last_update_at = Some(now());
                        });
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
            reports.push(BranchReport {
                repository: repo.name.clone(),
                environment: env.name.clone(),
                branch: env.branch.clone(),
                result,
            });
        }
        reports
    }

    async fn write_branch(
        &self,
        repo: &crate::config::Repository,
        env: &crate::config::Environment,
        changes: &[ImageChange],
        dry_run: bool,
    ) -> Result<Outcome, String> {
        let slot = {
            let mut mirrors = self.shared.mirrors.lock().await;
            mirrors.entry(repo.name.clone()).or_default().clone()
        };
        // One branch update per repository at a time: they share the mirror.
        let mut mirror = slot.lock().await;
        if mirror.is_none() {
            *mirror = Some(
                Mirror::open(&self.shared.state_dir, repo)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let m = mirror.as_ref().expect("opened above");
        let result = writeback::write_branch(m, repo, env, changes, dry_run).await;
        if result.is_err() {
            // Credentials or the url may have changed: open afresh next time.
            *mirror = None;
        }
        result.map_err(|e| e.to_string())
    }
}
