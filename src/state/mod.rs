//! What the daemon remembers across restarts, in the state dir:
//!
//! ```text
//! STATE_DIR/
//!   cache/metadata.json   what each digest is (platforms, creation time); see registry::cache
//!   git/NAME.git/         a bare mirror per repository; see writeback::git
//!   status.json           per image and environment: last check, last update, last error,
//!                         what image-updater wrote and what the branch holds, revert holds
//!   holds.json            holds and releases from `image-updater hold`/`release`
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
pub use status::{RevertHold, Status, StatusStore};

/// A hold made with `image-updater hold`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManualHold {
    pub since: String,
    /// RFC 3339; none means until released.
    pub until: Option<String>,
    pub reason: Option<String>,
}

impl ManualHold {
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
}

/// Now, as RFC 3339 in UTC, for status entries.
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}
