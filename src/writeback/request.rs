//! The update branch of a pull request: every image change for an environment is applied to
//! the environment branch's current head and committed once, and the update branch is set to
//! that commit. It is rebuilt from the environment's branch each time, so it never carries a
//! stale or conflicting edit, and it is replaced only with a lease on the value it was fetched
//! at: a writer who moved it since makes the push fail and start over, never lose work
//! silently. The environment's branch itself is never pushed to.

use gix::ObjectId;

use super::ImageChange;
use super::branch::{MAX_ATTEMPTS, Outcome, WriteError, message, plan};
use super::git::{Mirror, Push};
use crate::config::{Environment, Repository};

/// What the update branch holds after [`write_update_branch`].
#[derive(Debug, Clone, Default)]
pub struct Proposed {
    /// The edits, as for a push; `outcome.commit` is the update branch's commit when it moved.
    pub outcome: Outcome,
    /// The update branch's commit, when there is something to propose (moved or not).
    pub head: Option<ObjectId>,
    /// The update branch as it was fetched, when it existed.
    pub previous: Option<ObjectId>,
}

/// Builds the update branch `update` from `env`'s branch with `changes`; with `dry_run`, stops
/// before committing.
pub async fn write_update_branch(
    mirror: &Mirror,
    repo: &Repository,
    env: &Environment,
    update: &str,
    changes: &[ImageChange],
    dry_run: bool,
) -> Result<Proposed, WriteError> {
    let mut retries = 0;
    loop {
        if retries == 0 {
            mirror.fetch_recent().await?;
        } else {
            mirror.fetch().await?;
        }
        let base = mirror
            .head(&env.branch)?
            .ok_or_else(|| WriteError::NoBranch {
                branch: env.branch.clone(),
                base: None,
            })?;
        let previous = mirror.head(update)?;
        let mut outcome = {
            let reader = mirror.reader(base)?;
            plan(&reader, changes)?
        };
        outcome.parent = Some(base);
        outcome.retries = retries;
        if outcome.files.is_empty() || dry_run {
            return Ok(Proposed {
                outcome,
                head: None,
                previous,
            });
        }
        let files: Vec<_> = outcome
            .files
            .iter()
            .map(|f| (f.path.clone(), f.after.clone(), f.kind))
            .collect();
        let text = message(repo, env, &outcome.applied);
        let commit = mirror.commit(base, &files, repo, &text)?;
        // The same edits on the same base are already proposed: nothing to push.
        if let Some(prev) = previous {
            let (tree, _) = mirror.tree_and_parents(commit)?;
            let (prev_tree, prev_parents) = mirror.tree_and_parents(prev)?;
            if tree == prev_tree && prev_parents == [base] {
                return Ok(Proposed {
                    outcome,
                    head: Some(prev),
                    previous,
                });
            }
        }
        match mirror.push(commit, update, previous).await? {
            Push::Pushed => {
                outcome.commit = Some(commit);
                return Ok(Proposed {
                    outcome,
                    head: Some(commit),
                    previous,
                });
            }
            Push::Raced(reason) => {
                retries += 1;
                tracing::info!(branch = %update, %reason, attempt = retries, "update branch push lost a race; fetching and trying again");
                if retries >= MAX_ATTEMPTS {
                    return Err(WriteError::Contended {
                        branch: update.to_string(),
                        attempts: retries,
                    });
                }
            }
        }
    }
}

/// Deletes the update branch once its request is closed, if it is still where it was left.
pub async fn delete_update_branch(mirror: &Mirror, update: &str) -> Result<(), WriteError> {
    mirror.fetch_recent().await?;
    if let Some(at) = mirror.head(update)? {
        match mirror.delete(update, at).await? {
            Push::Pushed => tracing::debug!(branch = %update, "update branch deleted"),
            Push::Raced(reason) => {
                tracing::info!(branch = %update, %reason, "update branch moved; left in place")
            }
        }
    }
    Ok(())
}
