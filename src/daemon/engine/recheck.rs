//! The last look before a write. With `verify`, what was verified is the digest the tag named
//! when the decision was made; where the write holds the tag alone (no `pin_digest`), a push
//! over the tag in the seconds between the decision and the commit would deploy content that
//! was never verified. So each such tag is resolved again right before its branch is written,
//! and a tag that moved is not written this cycle (the next one decides again, and verifies
//! what it names then).

use super::{Chosen, Engine};
use crate::writeback::ImageChange;

impl Engine {
    /// `changes` without those whose verified tag moved since it was verified.
    pub(super) async fn recheck_verified(
        &self,
        env_name: &str,
        changes: Vec<(ImageChange, Chosen)>,
    ) -> Vec<(ImageChange, Chosen)> {
        super::fault::maybe_pause_before_write().await;
        let mut kept = Vec::with_capacity(changes.len());
        for (change, chosen) in changes {
            match self.moved_since_verified(env_name, &change, &chosen).await {
                None => kept.push((change, chosen)),
                Some(why) => {
                    tracing::warn!(image = %change.alias, environment = %env_name, "not written: {why}");
                    self.shared.status.update(&change.alias, env_name, |s| {
                        s.waiting = Some(why.clone());
                    });
                }
            }
        }
        kept
    }

    /// Why `change` may not be written now, when its tag no longer names the digest verified.
    async fn moved_since_verified(
        &self,
        env_name: &str,
        change: &ImageChange,
        chosen: &Chosen,
    ) -> Option<String> {
        let image = &self.config.images[&change.alias];
        let deployment = image
            .deployments
            .iter()
            .find(|d| d.environment == env_name)?;
        deployment.verify.as_ref()?;
        // A written digest is the verified one: the tag beside it may move, the digest cannot.
        if change.desired.digest.is_some() {
            return None;
        }
        let tag = change.desired.tag.as_ref()?;
        let verified = chosen.digest.as_ref()?;
        let Some(client) = self.registries.for_image(image) else {
            return Some(format!("no registry client for {}", image.reference));
        };
        let pushed_as = crate::poll::registry_tag(image, tag);
        match client.resolve(&image.reference.path, &pushed_as).await {
            Ok(now) if &now == verified => None,
            Ok(now) => Some(format!(
                "{tag} was pushed over after it was verified (now {now}, verified {verified}); decided again next cycle"
            )),
            Err(e) => Some(format!(
                "{tag} could not be resolved again before the write: {e}"
            )),
        }
    }
}
