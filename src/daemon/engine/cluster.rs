//! An environment's writes in a cluster: the branch's lock, and the pull request the
//! replicas share.
//!
//! A replica writes a branch only under the branch's etcd lock, and reads the branch afresh
//! under it: the replica that held it before may have pushed. The environment's open pull
//! request is kept in etcd and read and written under the same lock, so that every replica's
//! images are proposed in the one request. The images it proposes that other replicas own
//! are borrowed for the write (their records read first) and handed back when the write
//! changed what decides them (a merge, an unmerged close); their owners are poked to read
//! them again.

use super::{Chosen, Engine};
use crate::cluster::etcd::{Held, Session};
use crate::cluster::handover::Handover;
use crate::cluster::store::StoreError;
use crate::config::{Image, WriteMode};
use crate::writeback::ImageChange;

/// The images of other replicas a write borrowed, and what decided them before it.
pub(super) struct Lent<'a> {
    images: Vec<&'a Image>,
    before: Vec<String>,
}

impl Engine {
    /// Takes `env_name`'s branch lock through this replica's `session` (none: no lease, so
    /// nothing is written), and makes the next fetch of the branch a real one.
    pub(super) async fn lock_branch(
        &self,
        env_name: &str,
        session: Option<Session>,
    ) -> Result<Held, String> {
        let env = &self.config.environments[env_name];
        let Some(session) = session else {
            return Err("this replica has no etcd lease; nothing is written".into());
        };
        let held = session.lock_branch(&env.repository, &env.branch).await?;
        let repo = &self.config.repositories[&env.repository];
        if let Ok(mirror) = self.mirror(repo).await
            && let Some(m) = mirror.as_ref()
        {
            m.forget_fetch();
        }
        Ok(held)
    }

    /// With nothing of its own to write: whether another replica left a pull request open
    /// for `env_name`, which this cycle must look after (merged, closed, still wanted).
    pub(super) async fn request_elsewhere(
        &self,
        handover: &Handover,
        env_name: &str,
    ) -> Result<bool, StoreError> {
        if !self.proposes(env_name) {
            return Ok(false);
        }
        Ok(handover.store().request(env_name).await?.is_some())
    }

    /// Under the lock, before the write: the request as the last writer of the branch left
    /// it, the records of the images it proposes that other replicas own, and `changes`
    /// without those another replica's request settled since they were checked (decided
    /// again at their next check, not written from before).
    pub(super) async fn take_up_request(
        &self,
        handover: &Handover,
        env_name: &str,
        checked: &[String],
        changes: &mut Vec<(ImageChange, Chosen)>,
    ) -> Result<Lent<'_>, StoreError> {
        let request = handover.store().request(env_name).await?;
        let images: Vec<&Image> = request
            .iter()
            .flat_map(|r| r.proposed.keys())
            .filter(|alias| !checked.contains(alias))
            .filter_map(|alias| self.config.images.get(alias))
            .collect();
        self.shared.requests.set(env_name, request);
        let before = handover
            .borrow(&images, &self.shared.status, &self.shared.seen)
            .await?;
        if !changes.is_empty() && self.proposes(env_name) {
            let mine: Vec<&Image> = changes
                .iter()
                .filter_map(|(c, _)| self.config.images.get(&c.alias))
                .collect();
            let again = handover
                .changed_elsewhere(&mine, &self.shared.status, &self.shared.seen)
                .await?;
            if !again.is_empty() {
                tracing::info!(environment = %env_name, images = ?again, "another replica's pull request settled these images; deciding them again");
                changes.retain(|(c, _)| !again.contains(&c.alias));
            }
        }
        Ok(Lent { images, before })
    }

    /// After the write: the request as this replica leaves it, and the borrowed records.
    pub(super) async fn hand_back_request(
        &self,
        handover: &Handover,
        env_name: &str,
        lent: Lent<'_>,
    ) {
        let now = self.shared.requests.get(env_name);
        if let Err(e) = handover.store().set_request(env_name, now.as_ref()).await {
            tracing::warn!(environment = %env_name, error = %e, "cluster: cannot record the pull request for the other replicas; they find it on the forge");
        }
        let lease = self
            .shared
            .cluster
            .get()
            .and_then(|s| s.borrow().as_ref().map(Session::lease))
            .unwrap_or(0);
        handover
            .give_back(
                &lent.images,
                &lent.before,
                &self.shared.status,
                &self.shared.seen,
                lease,
            )
            .await;
    }

    /// Whether anything deployed to `env_name` is written through a pull request.
    fn proposes(&self, env_name: &str) -> bool {
        let env = &self.config.environments[env_name];
        env.write == WriteMode::PullRequest
            || self.config.images.values().any(|i| {
                i.deployments
                    .iter()
                    .any(|d| d.environment == env_name && d.write == Some(WriteMode::PullRequest))
            })
    }
}
