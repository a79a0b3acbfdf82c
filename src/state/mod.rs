//! What the daemon remembers across restarts, in the state dir:
//!
//! ```text
//! STATE_DIR/
//!   cache/metadata.json   what each digest is (platforms, creation time); see registry::cache
//!   git/NAME.git/         a bare mirror per repository; see writeback::git
//!   status.json           per image and environment: last check, last update, last error,
//!                         what image-updater wrote and what the branch holds, revert holds
//!   holds.json            holds and releases (`hold`, `release`, the status page), and who
//!                         made the last 200 holds, releases and polls
//!   seen.json             when each tag was first seen, for `min_age`
//!   requests.json         the pull request open per environment and the values it proposes
//! ```
//!
//! Every file is written to a temporary name and renamed, so a crash leaves the old file or
//! the new one. A file that cannot be read is set aside and rebuilt: the daemon never refuses
//! to start because of its own state.

use crate::private::write_atomically;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod by_image;
mod requests;
mod seen;
mod status;

pub use requests::{OpenRequest, Proposal, RequestStore};
pub use seen::{FirstSeen, Sightings};
pub use status::{MAX_WRITES, RevertHold, Status, StatusStore, Write};

/// A hold made with `image-updater hold`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualHold {
    pub since: String,
    /// RFC 3339; none means until released.
    pub until: Option<String>,
    pub reason: Option<String>,
    /// Who made it: the command's user, or the name a status-page session signed in with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl ManualHold {
    /// The hold in words, as `status` and the status page say it.
    pub fn describe(&self) -> String {
        let until = self.until.as_deref().unwrap_or("released");
        let by = self
            .by
            .as_deref()
            .map(|b| format!(" by {b}"))
            .unwrap_or_default();
        let why = self
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        format!("held by hand{by} since {} until {until}{why}", self.since)
    }

    pub fn active(&self) -> bool {
        match &self.until {
            None => true,
            Some(until) => until
                .parse::<jiff::Timestamp>()
                .map_or(true, |t| t > jiff::Timestamp::now()),
        }
    }
}

/// `holds.json`, written by the `hold` and `release` commands and read by the daemon at every
/// cycle: holds by image and environment, and revert holds a person lifted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holds {
    #[serde(default)]
    pub holds: BTreeMap<String, BTreeMap<String, ManualHold>>,
    /// (image, environment) -> a reverted value that may be deployed again.
    #[serde(default)]
    pub lifted: BTreeMap<String, BTreeMap<String, Lift>>,
    /// The last [`MAX_ACTIONS`] holds, releases and polls asked for, oldest first: who did
    /// what, and when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

/// How many holds, releases and polls `holds.json` remembers.
pub const MAX_ACTIONS: usize = 200;

/// A hold, a release or a poll asked for, as the status page shows it afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub at: String,
    pub by: String,
    /// `hold`, `release` or `poll`.
    pub action: String,
    pub image: String,
    pub environment: String,
    /// The hold's end and reason, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A revert hold released by hand: it lifts a hold on `value` made before `at`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lift {
    pub value: String,
    pub at: String,
}

impl Lift {
    /// Whether this release covers `hold` (a later revert of the same value is held again).
    pub fn covers(&self, hold: &RevertHold) -> bool {
        let parse = |t: &str| t.parse::<jiff::Timestamp>().ok();
        self.value == hold.value
            && matches!((parse(&self.at), parse(&hold.since)), (Some(a), Some(b)) if a >= b)
    }
}

impl Holds {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("holds.json")
    }

    /// The file's holds; a missing or unreadable file holds nothing (and says so once).
    pub fn read(state_dir: &Path) -> Holds {
        match std::fs::read(Holds::path(state_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "holds.json is not valid; ignoring it until it is fixed");
                Holds::default()
            }),
            Err(_) => Holds::default(),
        }
    }

    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomically(&Holds::path(state_dir), &bytes)
    }

    pub fn active(&self, alias: &str, env: &str) -> Option<&ManualHold> {
        self.holds.get(alias)?.get(env).filter(|h| h.active())
    }

    /// Remembers `action`, forgetting the oldest beyond [`MAX_ACTIONS`].
    pub fn remember(&mut self, action: Action) {
        self.actions.push(action);
        let over = self.actions.len().saturating_sub(MAX_ACTIONS);
        self.actions.drain(..over);
    }

    /// Holds `alias` in `env`, remembered as done by `hold.by`.
    pub fn hold(&mut self, alias: &str, env: &str, hold: ManualHold) {
        self.remember(Action {
            at: hold.since.clone(),
            by: hold.by.clone().unwrap_or_else(|| "unknown".into()),
            action: "hold".into(),
            image: alias.into(),
            environment: env.into(),
            detail: Some(hold.describe()),
        });
        self.holds
            .entry(alias.to_string())
            .or_default()
            .insert(env.to_string(), hold);
    }

    /// Releases `alias` in `env`: its hold by hand, and `revert`, the value a person reverted,
    /// which may be deployed again. Whether there was anything to release.
    pub fn release(&mut self, alias: &str, env: &str, revert: Option<&str>, by: &str) -> bool {
        let at = now();
        let manual = self
            .holds
            .get_mut(alias)
            .and_then(|envs| envs.remove(env))
            .is_some();
        if self.holds.get(alias).is_some_and(BTreeMap::is_empty) {
            self.holds.remove(alias);
        }
        if let Some(value) = revert {
            self.lifted.entry(alias.to_string()).or_default().insert(
                env.to_string(),
                Lift {
                    value: value.to_string(),
                    at: at.clone(),
                },
            );
        }
        let released = manual || revert.is_some();
        if released {
            self.remember(Action {
                at,
                by: by.to_string(),
                action: "release".into(),
                image: alias.into(),
                environment: env.into(),
                detail: revert.map(|v| format!("{v} may be deployed again")),
            });
        }
        released
    }

    /// What was done to `alias`, newest first.
    pub fn actions_of<'a>(&'a self, alias: &'a str) -> impl Iterator<Item = &'a Action> + 'a {
        self.actions.iter().rev().filter(move |a| a.image == alias)
    }
}

/// Now, as RFC 3339 in UTC, for status entries.
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Now to the second: what a hold says, since people read it.
pub fn this_second() -> jiff::Timestamp {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_and_releases_are_remembered_with_who_and_bounded() {
        let mut holds = Holds::default();
        let hold = ManualHold {
            since: "2026-12-01T09:00:00Z".into(),
            until: Some("2026-12-01T11:00:00Z".into()),
            reason: Some("INC-1".into()),
            by: Some("ana".into()),
        };
        assert_eq!(
            hold.describe(),
            "held by hand by ana since 2026-12-01T09:00:00Z until 2026-12-01T11:00:00Z: INC-1"
        );
        holds.hold("api", "prod", hold);
        assert!(holds.holds["api"].contains_key("prod"));
        assert!(holds.release("api", "prod", None, "bo"));
        assert!(
            holds.holds.is_empty(),
            "an image with no hold left is removed"
        );
        assert!(
            !holds.release("api", "prod", None, "bo"),
            "nothing left to release"
        );
        assert!(holds.release("api", "prod", Some("v1.5.0"), "bo"));
        assert_eq!(holds.lifted["api"]["prod"].value, "v1.5.0");
        let done: Vec<(&str, &str)> = holds
            .actions_of("api")
            .map(|a| (a.action.as_str(), a.by.as_str()))
            .collect();
        assert_eq!(
            done,
            [("release", "bo"), ("release", "bo"), ("hold", "ana")]
        );
        for i in 0..MAX_ACTIONS + 10 {
            holds.remember(Action {
                image: format!("img-{i}"),
                ..Action::default()
            });
        }
        assert_eq!(holds.actions.len(), MAX_ACTIONS);
        assert_eq!(holds.actions[0].image, "img-10", "the oldest go first");
        // A file written before holds remembered anything still reads.
        let old: Holds = serde_json::from_str(
            r#"{"holds":{"api":{"prod":{"since":"2026-12-01T09:00:00Z","until":null,"reason":null}}}}"#,
        )
        .unwrap();
        assert_eq!(old.holds["api"]["prod"].by, None);
    }

    #[test]
    fn writes_are_remembered_newest_first_and_bounded() {
        let mut s = Status::default();
        for i in 0..MAX_WRITES + 2 {
            s.wrote(format!("v{i} -> v{}", i + 1), format!("c{i}"), None);
        }
        assert_eq!(s.writes.len(), MAX_WRITES);
        assert_eq!(s.writes[0].commit, format!("c{}", MAX_WRITES + 1));
        assert_eq!(s.last_commit.as_deref(), Some(s.writes[0].commit.as_str()));
    }
}
