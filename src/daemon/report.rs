//! What a cycle found and did, image by image and branch by branch: what the engine returns,
//! and what `once`, `plan`, notifications and the scheduler read. Apart from the engine, so
//! that what reads a report never needs the engine that made it.

use std::sync::Arc;

use crate::forge::ForgeError;
use crate::poll;
use crate::registry::RegistryError;
use crate::writeback::{Desired, GitError, Guard, Outcome, WriteError};

/// Why a check decided nothing: the image's error this cycle. What decides on it (the
/// scheduler's backoff, the outage probe, notifications) reads the kind, never the words.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// The registry failed, refused or could not be reached, after its retries.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A chart repository failed, refused or could not be reached, or its index was too
    /// large or not an index.
    #[error(transparent)]
    ChartRepository(#[from] crate::charts::RepositoryError),
    /// A signature check could not be made (a key or trusted root unreadable): never a pass.
    #[error("{0}")]
    Verify(String),
    /// The tag the config pins is not in the repository.
    #[error("pinned tag {tag} is not in {repository}")]
    PinMissing { tag: String, repository: String },
    /// The poll outlived its deadline once it had its registry's turn.
    #[error("the poll took longer than {0}s and was abandoned")]
    Deadline(u64),
    /// A bug met an answer it did not expect; this image only.
    #[error("the poll panicked: {0}")]
    Panicked(String),
    /// No registry client could serve the image.
    #[error("no registry client for {0}")]
    NoClient(String),
    /// The cycle could not decide anything (etcd, the holds): every image of it alike.
    #[error("{0}")]
    Refused(String),
}

/// One image in one environment after a check.
#[derive(Debug, Clone)]
pub struct Check {
    pub alias: String,
    pub environment: String,
    pub result: Result<Chosen, CheckError>,
}

#[derive(Clone, Default)]
pub struct Chosen {
    /// `None` when nothing is to be written: no tag passed the policy, or a safety rule said
    /// wait (see `waiting`).
    pub desired: Option<Desired>,
    /// Why the winner won, from the selection engine.
    pub reason: String,
    /// The winner's digest, whether or not it is written.
    pub digest: Option<String>,
    /// The repository the winner says it was built from, linked from pull requests.
    pub source: Option<String>,
    /// Tags ranked above the winner whose digests failed the `verify` rules: `tag: why`.
    pub unverified: Vec<String>,
    /// Decides over the value the branch holds at write time.
    pub guard: Option<Guard>,
    /// Why nothing is written although the policy may have chosen something.
    pub waiting: Option<Wait>,
    /// Resolved at write time, after the source environment's own writes.
    pub promote_from: Option<String>,
    /// What the policy would write but a hold keeps back, for `status` and `test`.
    pub held_back: Option<Desired>,
    /// The registry's tags with the selection's verdict on each, for `test`.
    pub choice: Option<Arc<poll::Choice>>,
}

impl std::fmt::Debug for Chosen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chosen")
            .field("desired", &self.desired)
            .field("reason", &self.reason)
            .field("waiting", &self.waiting)
            .field("promote_from", &self.promote_from)
            .field("held_back", &self.held_back)
            .finish_non_exhaustive()
    }
}

/// Why a check writes nothing although it decided: what `status`, `test` and the log say, by
/// kind, so that what reads it never has to parse the words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Wait {
    /// `image-updater hold` keeps the image back.
    #[error("held by `image-updater hold` until {}{}", until.as_deref().unwrap_or("released"), reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Held {
        until: Option<String>,
        reason: Option<String>,
    },
    /// The pinned tag fails the `verify` rules.
    #[error("pinned tag {tag}: {why}")]
    PinUnverified { tag: String, why: String },
    /// The best tag is kept out by a safety rule (too young, a revert held) or the `verify`
    /// rules: `tag: why`.
    #[error("{tag}: {why}")]
    Rule { tag: String, why: String },
    /// A promotion cannot be made yet: its source has nothing to promote, or what it has
    /// fails this environment's rules.
    #[error("{0}")]
    Promotion(String),
}

/// Why a branch was not written this cycle; nothing of it was pushed, and the next cycle
/// tries again. What reads it reads the kind; the words are for people.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BranchError {
    /// The branch (or the pull request's update branch) could not be fetched, edited,
    /// committed or pushed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The forge could not be reached, refused, or answered what cannot be used.
    #[error("{error}; nothing was pushed to {branch} (retried next cycle)")]
    Forge { error: ForgeError, branch: String },
    /// The environment proposes pull requests, and its repository names no forge.
    #[error("repository {0} has no forge to open pull requests on")]
    NoForge(String),
    /// In a cluster: the branch's lock, or the pull request the replicas share, could not
    /// be had from etcd.
    #[error("{0}")]
    Cluster(String),
}

impl From<GitError> for BranchError {
    fn from(e: GitError) -> BranchError {
        BranchError::Write(WriteError::Git(e))
    }
}

/// One branch after a cycle.
#[derive(Debug, Clone)]
pub struct BranchReport {
    pub repository: String,
    pub environment: String,
    pub branch: String,
    pub result: Result<Outcome, BranchError>,
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
