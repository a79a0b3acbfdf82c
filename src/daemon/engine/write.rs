//! The write stage: a cycle's changes grouped by branch and written once per branch, sources
//! of promotions first, pushed in one commit or proposed in the environment's pull request.
//! Values another writer changed meanwhile are decided again, once, before or after the write.

use std::collections::BTreeMap;

use super::{BranchError, BranchReport, Check, Chosen, Engine, fault};
use crate::config::{Environment, Repository, WriteMode};
use crate::poll::Cycle;
use crate::state::Holds;
use crate::writeback::{self, Desired, GitError, ImageChange, Mirror, Outcome, WriteError};

impl Engine {
    /// Groups the chosen tags by branch and writes each branch once, sources of promotions
    /// first. Images whose value another writer changed while the branch was being written
    /// are decided again, once, against fresh registry answers and the branch as it is now.
    pub(super) async fn write(
        &self,
        checks: &[Check],
        holds: &Holds,
        dry_run: bool,
    ) -> Vec<BranchReport> {
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
    pub(super) async fn decide_again(
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
    pub(super) async fn moved_before_writing(
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
    pub(super) async fn change(&self, check: &Check) -> Option<(ImageChange, Chosen)> {
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
                        s.waiting = resolved.waiting.as_ref().map(ToString::to_string);
                    });
                resolved
            }
            None => chosen.clone(),
        };
        let desired = chosen.desired.clone()?;
        // Outside the environment's deploy windows, a push waits; a pull request is still
        // proposed (and only its merge waits, see `merge_if_asked`).
        let env = &self.config.environments[&check.environment];
        if deployment.write.unwrap_or(env.write) == WriteMode::Push
            && let Some(closed) = self.closed(env)
        {
            let now = fault::now();
            let why = closed.describe(now);
            tracing::info!(image = %check.alias, environment = %env.name, candidate = %desired.describe(), "{why}");
            self.shared
                .status
                .update(&check.alias, &check.environment, |s| {
                    s.candidate = Some(desired.describe());
                    s.waiting = Some(why.clone());
                });
            return None;
        }
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
    pub(super) async fn write_changes(
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
                Err(e) => {
                    let e = BranchError::Cluster(e.to_string());
                    return self.not_written(env_name, &changes, e);
                }
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
                    Err(e) => return self.not_written(env_name, &changes, BranchError::Cluster(e)),
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
                    return self.not_written(
                        env_name,
                        &changes,
                        BranchError::Cluster(e.to_string()),
                    );
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
    pub(super) fn not_written(
        &self,
        env_name: &str,
        changes: &[(ImageChange, Chosen)],
        why: BranchError,
    ) -> Vec<BranchReport> {
        let env = &self.config.environments[env_name];
        tracing::error!(branch = %env.branch, error = %why, "branch update skipped");
        for (c, _) in changes {
            self.shared.metrics.write_failed(&c.alias, &env.name);
            self.shared.status.update(&c.alias, &env.name, |s| {
                s.last_error = Some(why.to_string())
            });
        }
        vec![BranchReport {
            repository: env.repository.clone(),
            environment: env.name.clone(),
            branch: env.branch.clone(),
            result: Err(why),
        }]
    }

    pub(super) async fn write_locked(
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

    pub(super) async fn propose_changes(
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
                        .update(alias, &env.name, |s| s.last_error = Some(e.to_string()));
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
    pub(super) async fn push_changes(
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
        let result = self
            .write_branch(repo, env, &changes, dry_run)
            .await
            .map_err(BranchError::from);
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
                        .update(&c.alias, &env.name, |s| s.last_error = Some(e.to_string()));
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

    /// Why `env` may not be written now (outside its deploy windows, or frozen), if so.
    pub(super) fn closed(&self, env: &Environment) -> Option<crate::config::windows::Closed> {
        if env.windows.is_always_open() {
            return None;
        }
        env.windows.closed_at(fault::now())
    }

    /// The repository's mirror, opened if need be and held: one branch update per repository
    /// at a time, as they share it.
    pub(super) async fn mirror(
        &self,
        repo: &Repository,
    ) -> Result<tokio::sync::OwnedMutexGuard<Option<Mirror>>, GitError> {
        let slot = {
            let mut mirrors = self.shared.mirrors.lock().await;
            mirrors.entry(repo.name.clone()).or_default().clone()
        };
        let mut mirror = slot.lock_owned().await;
        if mirror.is_none() {
            *mirror = Some(Mirror::open(&self.shared.state_dir, repo).await?);
        }
        Ok(mirror)
    }

    pub(super) async fn write_branch(
        &self,
        repo: &Repository,
        env: &Environment,
        changes: &[ImageChange],
        dry_run: bool,
    ) -> Result<Outcome, WriteError> {
        let mut mirror = self.mirror(repo).await?;
        let m = mirror.as_ref().expect("opened by mirror()");
        let result = writeback::write_branch(m, repo, env, changes, dry_run).await;
        if result.is_err() {
            // Credentials or the url may have changed: open afresh next time.
            *mirror = None;
        }
        result
    }
}
