//! The last stage: what a branch update did, into the status store (what the branch holds,
//! what was written, why an image waits, a revert's hold), the metrics and the log.

use std::collections::BTreeMap;

use super::{Chosen, Engine};
use crate::config::{Environment, Repository};
use crate::state::{RevertHold, now};
use crate::writeback::{ImageChange, Outcome};

impl Engine {
    /// Logs, counts and remembers what a branch update did.
    pub(super) fn record(
        &self,
        env: &Environment,
        repo: &Repository,
        changes: &[ImageChange],
        chosen: &BTreeMap<&str, &Chosen>,
        outcome: &Outcome,
        dry_run: bool,
    ) {
        self.record_current(env, changes, outcome, dry_run);
        self.record_applied(env, chosen, outcome, dry_run);
        self.record_skipped(env, changes, outcome, dry_run);
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

    /// What the branch holds now, for promotion and `status`.
    fn record_current(
        &self,
        env: &Environment,
        changes: &[ImageChange],
        outcome: &Outcome,
        dry_run: bool,
    ) {
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
    }

    /// The updates written: counted, remembered as written (lifting a revert's hold), logged.
    fn record_applied(
        &self,
        env: &Environment,
        chosen: &BTreeMap<&str, &Chosen>,
        outcome: &Outcome,
        dry_run: bool,
    ) {
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
                s.wrote(format!("{} -> {}", a.old, a.new), commit.clone(), None);
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
    }

    /// The updates the branch refused: a person's revert is held; any other reason is why
    /// the image waits, said at INFO once while it stays the same.
    fn record_skipped(
        &self,
        env: &Environment,
        changes: &[ImageChange],
        outcome: &Outcome,
        dry_run: bool,
    ) {
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
    }
}
