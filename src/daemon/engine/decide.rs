//! The first stages of a check: poll the registry, choose a tag under the environment's
//! policy, holds and safety rules, and verify it. What comes out is a [`Chosen`]: what to
//! write, or why nothing is written yet. Promotions are chosen later, at write time, from what
//! their source environment holds then.

use std::sync::Arc;

use super::{CheckError, Chosen, Engine, POLL_DEADLINE, Wait, fault, safety};
use crate::config::{AgeFrom, ChartIndex, Deployment, Image, Source, Tags};
use crate::poll::{self, Cycle, Gate};
use crate::registry;
use crate::select::Strategy;
use crate::state::Holds;
use crate::writeback::Desired;

impl Engine {
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
        let hold = holds.active(alias, env).map(|hold| Wait::Held {
            until: hold.until.clone(),
            reason: hold.reason.clone(),
        });
        if let Some(from) = &deployment.safety.promote_from {
            return Ok(Chosen {
                promote_from: hold.is_none().then(|| from.clone()),
                waiting: hold,
                ..Chosen::default()
            });
        }
        let polled = match &image.source {
            Source::ChartIndex(index) => {
                let poll = self.poll_index(cycle, image, deployment, index);
                match tokio::time::timeout(POLL_DEADLINE, poll).await {
                    Ok(result) => result,
                    Err(_) => Err(CheckError::Deadline(POLL_DEADLINE.as_secs())),
                }
            }
            Source::Image | Source::OciChart => {
                let client = self
                    .registries
                    .for_image(image)
                    .ok_or_else(|| CheckError::NoClient(image.reference.to_string()))?;
                // The semaphores live as long as the engine, and are never closed.
                let _permit = match self.limit(image) {
                    Some(s) => s.acquire_owned().await.ok(),
                    None => None,
                };
                // The deadline counts from here: waiting for the registry's turn is not the
                // poll's fault, but a poll that hangs once it has its turn is abandoned.
                let poll = self.poll(cycle, client, image, deployment);
                match tokio::time::timeout(POLL_DEADLINE, poll).await {
                    Ok(result) => result,
                    Err(_) => Err(CheckError::Deadline(POLL_DEADLINE.as_secs())),
                }
            }
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
    pub(super) async fn poll(
        &self,
        cycle: &Cycle,
        client: &registry::Client,
        image: &Image,
        deployment: &Deployment,
    ) -> Result<Chosen, CheckError> {
        fault::maybe_panic(&image.alias);
        // A digest that is written must be the tag's digest now; others may be remembered.
        let reuse_digests = image.tags == Tags::Immutable && !deployment.safety.pin_digest;
        let repository = image.reference.path.clone();
        if let Some(pin) = &deployment.safety.pin {
            return self
                .pinned(cycle, client, image, deployment, pin, reuse_digests)
                .await;
        }
        // A push event reported a tag: chosen among the tags listed a little while ago and the
        // pushed ones, without listing again. The choice stands only when a pushed tag wins
        // (see `Cycle::assumed_tags`); anything else is chosen again from a fresh list.
        if let Some(tags) = cycle.assumed_tags(client, &repository) {
            let pushed = cycle.pushed(client, &repository);
            let current = self
                .shared
                .status
                .get(&image.alias, &deployment.environment)
                .current;
            match self
                .choose_among(cycle, client, image, deployment, &tags, reuse_digests)
                .await
            {
                Ok(chosen) if won_by_push(image, &chosen, pushed, current.as_deref()) => {
                    client.add_recent_tags(&repository, pushed.iter().map(|p| p.tag.as_str()));
                    return Ok(chosen);
                }
                Ok(_) => {
                    tracing::debug!(image = %image.alias, "no pushed tag won among the tags last listed; listing them again");
                }
                Err(e) => {
                    tracing::debug!(image = %image.alias, error = %e, "the check from a push event's tags failed; listing them again");
                }
            }
        }
        let tags = cycle.tags(client, &repository).await?;
        self.choose_among(cycle, client, image, deployment, &tags, reuse_digests)
            .await
    }

    /// The choice among `tags` under `deployment`'s policy and safety rules.
    async fn choose_among(
        &self,
        cycle: &Cycle,
        client: &registry::Client,
        image: &Image,
        deployment: &Deployment,
        tags: &[String],
        reuse_digests: bool,
    ) -> Result<Chosen, CheckError> {
        let repository = &image.reference.path;
        // A chart's versions are what its first sightings are kept by.
        let versions;
        let offered: &[String] = match image.source {
            Source::OciChart => {
                versions = poll::offered(&deployment.policy, tags);
                &versions
            }
            _ => tags,
        };
        let rules = self.rules(image, deployment, offered);
        let gate = Gate {
            reuse_digests,
            verify: deployment
                .verify
                .as_deref()
                .map(|rules| (&*self.shared.verifier, rules)),
            ..rules.gate(deployment)
        };
        let choice = poll::choose_among(
            client,
            cycle,
            repository,
            tags,
            &deployment.policy,
            &deployment.platforms,
            &gate,
        )
        .await?;
        Ok(self.chosen(image, deployment, choice, &rules.status))
    }

    /// A chart repository's part of a check: the index (a 304 when unchanged) and the
    /// selection, under the same safety rules as a registry's. The index says when each
    /// version was packaged, so `age_from = "created"` costs nothing more.
    async fn poll_index(
        &self,
        cycle: &Cycle,
        image: &Image,
        deployment: &Deployment,
        index: &ChartIndex,
    ) -> Result<Chosen, CheckError> {
        fault::maybe_panic(&image.alias);
        let (repository, wanted) = self
            .indexes
            .get(&index.url)
            .ok_or_else(|| CheckError::NoClient(index.url.clone()))?;
        let repository = repository.as_ref().map_err(|e| e.clone())?;
        if let Some(pin) = &deployment.safety.pin {
            let charts = cycle.index(repository, wanted).await?;
            let listed = charts
                .get(&index.name)
                .is_some_and(|versions| versions.iter().any(|v| v.version == *pin));
            if !listed {
                return Err(CheckError::PinMissing {
                    tag: pin.clone(),
                    repository: format!("{} (chart {})", index.url, index.name),
                });
            }
            return Ok(Chosen {
                desired: Some(Desired::of(image, Some(pin.clone()), None)),
                reason: "pinned in the config".into(),
                ..Chosen::default()
            });
        }
        let charts = cycle.index(repository, wanted).await?;
        let versions: Vec<String> = charts
            .get(&index.name)
            .map(|v| v.iter().map(|e| e.version.clone()).collect())
            .unwrap_or_default();
        let rules = self.rules(image, deployment, &versions);
        let choice = poll::choose_indexed(
            cycle,
            repository,
            wanted,
            &index.name,
            index.allow_deprecated,
            &deployment.policy,
            &rules.gate(deployment),
        )
        .await?;
        Ok(self.chosen(image, deployment, choice, &rules.status))
    }

    /// The safety rules of `deployment` for this poll: what it has seen of the names
    /// `offered` lists (recorded now, for `min_age`), and a revert it holds below.
    fn rules(&self, image: &Image, deployment: &Deployment, offered: &[String]) -> Rules {
        let repository_name = image.reference.repository();
        self.shared.seen.observe(&repository_name, offered);
        let not_yet = safety::min_age(deployment, || self.shared.seen.sightings(&repository_name));
        let status = self
            .shared
            .status
            .get(&image.alias, &deployment.environment);
        let held = status.held.as_ref().map(|h| {
            (
                h.tag.clone(),
                format!(
                    "held: {} was reverted on the branch (to {}) {}",
                    h.value, h.found, h.since
                ),
            )
        });
        Rules {
            not_yet,
            held,
            status,
        }
    }

    /// What a poll's `choice` asks to write, with the guard that keeps a person's revert and
    /// a downgrade from being overwritten.
    fn chosen(
        &self,
        image: &Image,
        deployment: &Deployment,
        choice: poll::Choice,
        status: &crate::state::Status,
    ) -> Chosen {
        let Some(i) = choice.selection.selected else {
            return none_passed(choice);
        };
        let winner = &choice.candidates[i];
        let tracked = matches!(deployment.policy.strategy, Strategy::Digest { .. });
        let written_digest = (tracked || deployment.safety.pin_digest)
            .then(|| choice.digest.clone())
            .flatten();
        let want = Desired::of(image, Some(winner.tag.clone()), written_digest);
        let guard = safety::guard(
            &deployment.policy,
            choice.candidates.clone(),
            &want,
            status,
            deployment.safety.allow_downgrade,
        );
        Chosen {
            desired: Some(want),
            reason: choice.selection.verdicts[i].reason.clone(),
            digest: choice.digest.clone(),
            source: choice.source.clone(),
            unverified: unverified_of(&choice),
            guard: Some(guard),
            choice: Some(Arc::new(choice)),
            ..Chosen::default()
        }
    }

    /// The poll of a pinned tag: it must be in the repository, and pass the `verify` rules.
    async fn pinned(
        &self,
        cycle: &Cycle,
        client: &registry::Client,
        image: &Image,
        deployment: &Deployment,
        pin: &str,
        reuse_digests: bool,
    ) -> Result<Chosen, CheckError> {
        let repository = &image.reference.path;
        let tags = cycle.tags(client, repository).await?;
        let pinned_tag = poll::registry_tag(image, pin);
        if !tags.contains(&pinned_tag) {
            return Err(CheckError::PinMissing {
                tag: pin.to_string(),
                repository: image.reference.repository(),
            });
        }
        // A verified digest is the tag's digest now, never one remembered (see Gate).
        let reuse = reuse_digests && deployment.verify.is_none();
        let digest = cycle.digest(client, repository, &pinned_tag, reuse).await?;
        if let Some(why) = self.unverified(client, image, deployment, &digest).await? {
            return Ok(Chosen {
                reason: "pinned in the config".into(),
                waiting: Some(Wait::PinUnverified {
                    tag: pin.to_string(),
                    why,
                }),
                digest: Some(digest),
                ..Chosen::default()
            });
        }
        let written_digest = deployment.safety.pin_digest.then(|| digest.clone());
        Ok(Chosen {
            desired: Some(Desired::of(image, Some(pin.to_string()), written_digest)),
            reason: "pinned in the config".into(),
            digest: Some(digest),
            ..Chosen::default()
        })
    }

    /// Why `digest` may not be written under `deployment`'s `verify` rules, or `None` when it
    /// may (or there are none). A check that cannot be made is an error, never a pass.
    pub(super) async fn unverified(
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
            waiting: Some(Wait::Promotion(why)),
            ..Chosen::default()
        };
        let Some(client) = self.registries.for_image(image) else {
            return waiting(format!("no registry client for {}", image.reference));
        };
        let digest = match (&resolved.digest, &desired.tag) {
            (Some(d), _) => d.clone(),
            (None, Some(tag)) => match client
                .resolve(&image.reference.path, &poll::registry_tag(image, tag))
                .await
            {
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
            Err(why) => Chosen {
                waiting: Some(Wait::Promotion(why)),
                ..Chosen::default()
            },
        }
    }
}

/// The safety rules of one poll, as [`Engine::rules`] reads them.
struct Rules {
    not_yet: Option<safety::NotYet>,
    /// The reverted tag held at or below, and why.
    held: Option<(String, String)>,
    status: crate::state::Status,
}

impl Rules {
    fn gate(&self, deployment: &Deployment) -> Gate<'_> {
        Gate {
            not_yet: self.not_yet.as_deref(),
            needs_created: deployment.safety.min_age.is_some()
                && deployment.safety.age_from == AgeFrom::Created,
            held: self.held.as_ref().map(|(t, r)| (t.as_str(), r.as_str())),
            ..Gate::default()
        }
    }
}

/// No tag passed the policy: says why the best tag is out when a safety rule or the
/// `verify` rules took it.
fn none_passed(choice: poll::Choice) -> Chosen {
    let waiting = choice
        .candidates
        .iter()
        .zip(&choice.selection.verdicts)
        .find(|(c, _)| c.unavailable.as_ref().is_some_and(|u| u.why.is_waiting()))
        .map(|(c, v)| (c.tag.clone(), v.reason.clone()))
        .or_else(|| choice.unverified.first().cloned())
        .map(|(tag, why)| Wait::Rule { tag, why });
    let unverified = unverified_of(&choice);
    Chosen {
        reason: "no tag passed the policy".into(),
        waiting,
        unverified,
        choice: Some(Arc::new(choice)),
        ..Chosen::default()
    }
}

/// Whether the tag `chosen` writes is one a push event reported, chosen from a list that
/// has the tag the branch holds (`current`, when known): a list without it is too old to rank
/// the winner against it.
fn won_by_push(
    image: &Image,
    chosen: &Chosen,
    pushed: &[poll::PushedTag],
    current: Option<&str>,
) -> bool {
    let Some(choice) = chosen.choice.as_ref() else {
        return false;
    };
    let knows_current = current.is_none_or(|value| {
        let tag = safety::tag_of(value);
        choice.candidates.iter().any(|c| c.tag == tag)
    });
    knows_current
        && choice.selected().is_some_and(|winner| {
            let tag = poll::registry_tag(image, &winner.tag);
            pushed.iter().any(|p| p.tag == tag)
        })
}

/// `tag: why` for each tag the `verify` rules kept from winning.
fn unverified_of(choice: &poll::Choice) -> Vec<String> {
    choice
        .unverified
        .iter()
        .map(|(tag, why)| format!("{tag}: {why}"))
        .collect()
}
