//! Deploy safety: the rules that keep a tag the policy chose off a branch until it should be
//! there.
//!
//! - **Respected reverts.** When the branch holds something other than what image-updater
//!   last wrote there, a person changed it back: that value, and everything ranking below it,
//!   is held until something newer appears or the hold is released.
//! - **Never downgrade** (unless `allow_downgrade`): a tag ranking below the file's is not
//!   written.
//! - **Minimum age**: a tag is eligible once it is `min_age` old, counted from when it was
//!   first seen or from the image's creation time.
//! - **Promotion**: an environment with `promote_from` takes only what image-updater wrote to
//!   that environment, once it has been there for `soak` without being reverted, and within
//!   its own policy; with `pin_digest`, the exact digest.
//! - **Pins and holds**: `pin` in the config, `image-updater hold` on the command line.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{AgeFrom, Config, Deployment, Image};
use crate::select::{self, Candidate, Policy, Strategy};
use crate::state::{Sightings, Status};
use crate::writeback::{Decision, Desired, Guard};

/// `tag@digest` split into the tag.
pub(crate) fn tag_of(value: &str) -> &str {
    value.split('@').next().unwrap_or(value)
}

/// The guard for writing `desired` over whatever the files hold: revert detection and the
/// downgrade rule. `candidates` place tags that need a creation time to be ranked.
pub fn guard(
    policy: &Policy,
    candidates: Vec<Candidate>,
    desired: &Desired,
    status: &Status,
    allow_downgrade: bool,
) -> Guard {
    let policy = policy.clone();
    let wanted = desired.describe();
    let written = status.written.clone();
    // What the branch was seen holding before this decision's registry answers were read:
    // any other value was put there since, by another writer.
    let known = [status.current.clone(), status.written.clone()];
    Arc::new(move |current: &str| {
        if written.as_deref() == Some(wanted.as_str()) && current != wanted {
            return Decision::Reverted(format!(
                "the branch has {current} where image-updater wrote {wanted}: a person changed it back, so {wanted} and older are held"
            ));
        }
        let (now, next) = (tag_of(current), tag_of(&wanted));
        let ranked = select::outranks(&policy, &candidates, now, next);
        if !allow_downgrade && ranked == Some(true) {
            return Decision::Skip(format!(
                "{wanted} ranks below {current}, which the branch has; set allow_downgrade = true to allow it"
            ));
        }
        // Two values that cannot be ranked (two digests of one tag; a tag the policy admits
        // that this decision's list did not have): when another writer put the branch's value
        // there after this decision read the registry, it may be the newer one. Decided
        // again, from registry answers read after that value was seen, it is never replaced
        // by an older one.
        if ranked.is_none()
            && current != wanted
            && select::filter(&policy, now).is_ok()
            && known.iter().all(|k| k.as_deref() != Some(current))
        {
            return Decision::Moved(format!(
                "the branch holds {current}, written by another writer after {wanted} was decided"
            ));
        }
        Decision::Apply
    })
}

/// Why a tag is not old enough yet, for [`crate::poll::Gate::not_yet`].
pub type NotYet = Box<crate::poll::NotYet>;

/// The `min_age` rule of a deployment, given when each tag was first seen (asked for only
/// when the rule counts from first sightings).
pub fn min_age(deployment: &Deployment, first_seen: impl FnOnce() -> Sightings) -> Option<NotYet> {
    let min = deployment.safety.min_age?;
    let from = deployment.safety.age_from;
    let first_seen = match from {
        AgeFrom::FirstSeen => first_seen(),
        AgeFrom::Created => Sightings::default(),
    };
    Some(Box::new(move |c: &Candidate| {
        let since = match from {
            AgeFrom::FirstSeen => first_seen.get(&c.tag),
            AgeFrom::Created => c.created,
        };
        let Some(since) = since else {
            return Some(format!("age unknown (min_age {})", human(min)));
        };
        let age = jiff::Timestamp::now().duration_since(since);
        let age = Duration::try_from(age).unwrap_or_default();
        (age < min).then(|| {
            let counted = match from {
                AgeFrom::FirstSeen => "seen",
                AgeFrom::Created => "built",
            };
            format!(
                "too young: {counted} {} ago, min_age {}",
                human(age),
                human(min)
            )
        })
    }))
}

/// What an environment with `promote_from` would take from its source, or why nothing yet.
pub struct Promotion {
    pub desired: Desired,
    pub digest: Option<String>,
}

pub fn promotion(
    deployment: &Deployment,
    from: &str,
    source: &Status,
    image: &Image,
) -> Result<Promotion, String> {
    let Some(value) = &source.written else {
        return Err(format!(
            "waiting for image-updater to deploy something to {from}"
        ));
    };
    if source.held.as_ref().is_some_and(|h| h.value == *value) {
        return Err(format!("{value} was reverted in {from}"));
    }
    if source.current.as_ref().is_some_and(|c| c != value) {
        return Err(format!("{from} no longer runs {value}"));
    }
    let since = source
        .last_update_at
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .ok_or_else(|| format!("when {value} reached {from} is unknown"))?;
    let soaked =
        Duration::try_from(jiff::Timestamp::now().duration_since(since)).unwrap_or_default();
    if soaked < deployment.safety.soak {
        return Err(format!(
            "soaking: {value} has been in {from} for {} of {}",
            human(soaked),
            human(deployment.safety.soak)
        ));
    }
    let tag = tag_of(value).to_string();
    // Promotion never leaves this environment's own rules.
    if !matches!(deployment.policy.strategy, Strategy::NewestBuild) {
        let selection = select::select(&deployment.policy, &[Candidate::new(tag.clone())]);
        if selection.selected.is_none() {
            return Err(format!(
                "{tag} from {from} is not allowed here: {}",
                selection.verdicts[0].reason
            ));
        }
    }
    let digest = source.written_digest.clone();
    Ok(Promotion {
        desired: Desired::of(
            image,
            Some(tag),
            if deployment.safety.pin_digest {
                digest.clone()
            } else {
                None
            },
        ),
        digest,
    })
}

/// Environments in the order they are written: an environment after the ones it promotes
/// from, so a promotion sees this cycle's writes and reverts there.
pub fn env_order(config: &Config) -> Vec<String> {
    let mut after: BTreeMap<&str, Vec<&str>> = config
        .environments
        .keys()
        .map(|e| (e.as_str(), Vec::new()))
        .collect();
    for image in config.images.values() {
        for d in &image.deployments {
            if let Some(from) = &d.safety.promote_from
                && let Some(deps) = after.get_mut(d.environment.as_str())
            {
                deps.push(from.as_str());
            }
        }
    }
    let mut order: Vec<String> = Vec::new();
    while order.len() < after.len() {
        let ready = after
            .iter()
            .find(|(e, deps)| {
                !order.iter().any(|o| o == *e) && deps.iter().all(|d| order.iter().any(|o| o == d))
            })
            .map(|(e, _)| e.to_string());
        match ready {
            Some(e) => order.push(e),
            // Images disagree about the direction: fall back to name order for the rest.
            None => {
                let rest: Vec<String> = after
                    .keys()
                    .filter(|e| !order.iter().any(|o| o == *e))
                    .map(|e| e.to_string())
                    .collect();
                order.extend(rest);
            }
        }
    }
    order
}

/// `2h 5m`, `3d 4h`, `45s`: durations as status lines show them.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::{Constraint, Policy, Strategy};

    fn semver(c: &str) -> Policy {
        Policy::new(Strategy::Semver {
            constraint: Constraint::parse(c).unwrap(),
            include_prerelease: false,
        })
    }

    fn desired(tag: &str) -> Desired {
        Desired {
            repository: "ghcr.io/org/api".into(),
            written: "ghcr.io/org/api".into(),
            tag: Some(tag.into()),
            digest: None,
            replaces: Vec::new(),
            chart: None,
        }
    }

    #[test]
    fn reverts_are_noticed_and_downgrades_refused() {
        let written = Status {
            written: Some("v1.5.0".into()),
            ..Status::default()
        };
        let g = guard(&semver(">=1"), vec![], &desired("v1.5.0"), &written, false);
        assert!(matches!(g("v1.4.0"), Decision::Reverted(_)));
        let g = guard(
            &semver(">=1"),
            vec![],
            &desired("v1.4.0"),
            &Status::default(),
            false,
        );
        assert!(matches!(g("v1.5.0"), Decision::Skip(r) if r.contains("ranks below")));
        assert_eq!(g("v1.3.0"), Decision::Apply);
        let g = guard(
            &semver(">=1"),
            vec![],
            &desired("v1.4.0"),
            &Status::default(),
            true,
        );
        assert_eq!(g("v1.5.0"), Decision::Apply);
        // Values the strategy cannot place are not judged.
        assert_eq!(g("(none)"), Decision::Apply);
    }

    /// Two digests of one tag cannot be ranked: a digest another writer put on the branch
    /// after the decision is decided against again, never simply replaced; one this daemon
    /// saw there or wrote itself is replaced.
    #[test]
    fn a_digest_another_writer_put_there_is_decided_against_again() {
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let policy = Policy::new(Strategy::Digest {
            tag: "latest".into(),
        });
        let mut want = desired("latest");
        want.digest = Some(digest('b'));
        let seen = Status {
            current: Some(format!("latest@{}", digest('a'))),
            ..Status::default()
        };
        let g = guard(&policy, vec![], &want, &seen, false);
        assert_eq!(g(&format!("latest@{}", digest('a'))), Decision::Apply);
        assert!(matches!(
            g(&format!("latest@{}", digest('c'))),
            Decision::Moved(r) if r.contains("another writer")
        ));
        let wrote = Status {
            written: Some(format!("latest@{}", digest('c'))),
            ..Status::default()
        };
        let g = guard(&policy, vec![], &want, &wrote, false);
        assert_eq!(g(&format!("latest@{}", digest('c'))), Decision::Apply);
        // A value the policy cannot admit is no other writer's decision.
        assert_eq!(g("main@sha256:1"), Decision::Apply);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(human(Duration::from_secs(3 * 86400 + 4 * 3600)), "3d 4h");
    }
}
