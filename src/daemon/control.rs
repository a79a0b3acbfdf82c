//! Asking the running daemon to check an image now: `image-updater poll ALIAS`, after a hotfix
//! push, without waiting for the interval or a webhook.
//!
//! The daemon writes `control.json` into its state dir (0600, like everything there): the
//! address it serves on and a random token. Whoever can read the state dir may ask; nobody
//! else can, whatever address the listener is exposed on. The request is `POST /poll` on the
//! metrics listener with `image=ALIAS` (and optionally `env=ENV`) in the query and the token as
//! a bearer credential; the answer, once the image's next cycle is done, is a [`PollAnswer`].

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::engine::Report;

/// `control.json` in the state dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlFile {
    /// Where the daemon serves `/metrics` and `/poll`.
    pub listen: SocketAddr,
    /// The bearer token `/poll` requires.
    pub token: String,
    pub pid: u32,
}

impl ControlFile {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("control.json")
    }

    /// A fresh token for a daemon that listens on `listen`, written to the state dir.
    pub fn create(state_dir: &Path, listen: SocketAddr) -> std::io::Result<ControlFile> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let token = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let file = ControlFile {
            listen,
            token,
            pid: std::process::id(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("the control file serializes");
        crate::private::write_atomically(&Self::path(state_dir), &json)?;
        Ok(file)
    }

    pub fn read(state_dir: &Path) -> Result<ControlFile, String> {
        let path = Self::path(state_dir);
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "cannot read {}: {e} (is the daemon running with this state dir?)",
                path.display()
            )
        })?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether `presented` is the token, compared in constant time.
    pub fn accepts(&self, presented: &str) -> bool {
        super::http::same_secret(presented.as_bytes(), self.token.as_bytes())
    }
}

/// A request to check `image` now, answered when its cycle is done.
pub struct PollRequest {
    pub image: String,
    pub env: Option<String>,
    pub reply: oneshot::Sender<Result<PollAnswer, PollRefused>>,
}

/// Why a poll request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollRefused {
    #[error("no image `{0}` in the running config (images: {1})")]
    UnknownImage(String, String),
    #[error("image `{0}` is not deployed to `{1}` (environments: {2})")]
    UnknownEnvironment(String, String, String),
    #[error("{0}")]
    CycleFailed(String),
    #[error("the image was removed from the config before it was checked")]
    Removed,
}

/// What one image's cycle did, for `image-updater poll`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PollAnswer {
    pub image: String,
    pub checks: Vec<CheckAnswer>,
    pub writes: Vec<WriteAnswer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckAnswer {
    pub environment: String,
    /// The value the policy chose, when one is to be written.
    pub candidate: Option<String>,
    pub reason: Option<String>,
    pub waiting: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteAnswer {
    pub environment: String,
    pub branch: String,
    /// `old -> new`, when written.
    pub update: Option<String>,
    pub commit: Option<String>,
    /// Why it was not written (the branch's value, a revert, ownership), or the error.
    pub skipped: Option<String>,
    pub error: Option<String>,
}

impl PollAnswer {
    /// `report`'s part about `image` (in `env` only, when given).
    pub fn from_report(report: &Report, image: &str, env: Option<&str>) -> PollAnswer {
        let in_env = |e: &str| env.is_none_or(|want| want == e);
        let checks = report
            .checks
            .iter()
            .filter(|c| c.alias == image && in_env(&c.environment))
            .map(|c| match &c.result {
                Ok(chosen) => CheckAnswer {
                    environment: c.environment.clone(),
                    candidate: chosen.desired.as_ref().map(|d| d.describe()),
                    reason: (!chosen.reason.is_empty()).then(|| chosen.reason.clone()),
                    waiting: chosen.waiting.as_ref().map(ToString::to_string),
                    error: None,
                },
                Err(e) => CheckAnswer {
                    environment: c.environment.clone(),
                    candidate: None,
                    reason: None,
                    waiting: None,
                    error: Some(e.to_string()),
                },
            })
            .collect();
        let mut writes = Vec::new();
        for b in report.branches.iter().filter(|b| in_env(&b.environment)) {
            let mut answer = WriteAnswer {
                environment: b.environment.clone(),
                branch: b.branch.clone(),
                update: None,
                commit: None,
                skipped: None,
                error: None,
            };
            match &b.result {
                Err(e) => answer.error = Some(e.to_string()),
                Ok(outcome) => {
                    if let Some(a) = outcome.applied.iter().find(|a| a.alias == image) {
                        answer.update = Some(format!("{} -> {}", a.old, a.new));
                        answer.commit = outcome.commit.map(|c| c.to_string());
                    } else if let Some(s) = outcome.skipped.iter().find(|s| s.alias == image) {
                        answer.skipped = Some(format!("{}: {}", s.current, s.reason));
                    } else if let Some(f) = outcome.failed.iter().find(|f| f.alias == image) {
                        answer.error = Some(format!("{}: {}", f.file.display(), f.message));
                    } else {
                        continue;
                    }
                }
            }
            writes.push(answer);
        }
        PollAnswer {
            image: image.to_string(),
            checks,
            writes,
        }
    }
}

/// Poll requests waiting for their image's cycle: first for a cycle to start after the
/// request (a cycle already running may have listed the tags before the push that prompted
/// it), then for that cycle to end.
#[derive(Default)]
pub struct Waiters {
    waiting: Vec<(PollRequest, Option<u64>)>,
}

impl Waiters {
    pub fn push(&mut self, request: PollRequest) {
        self.waiting.push((request, None));
    }

    /// Cycle `id` starts with `due`: the requests for those images wait for it.
    pub fn started(&mut self, id: u64, due: &[String]) {
        for (request, cycle) in &mut self.waiting {
            if cycle.is_none() && due.contains(&request.image) {
                *cycle = Some(id);
            }
        }
    }

    /// Cycle `id` ended: answers the requests that waited for it.
    pub fn finished(&mut self, id: u64, outcome: Result<&Report, &str>) {
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, cycle)| *cycle == Some(id));
        self.waiting = rest;
        for (request, _) in done {
            let answer = match outcome {
                Ok(report) => Ok(PollAnswer::from_report(
                    report,
                    &request.image,
                    request.env.as_deref(),
                )),
                Err(why) => Err(PollRefused::CycleFailed(why.to_string())),
            };
            let _ = request.reply.send(answer);
        }
    }

    /// Answers the requests whose image the config no longer has.
    pub fn retain_known(&mut self, known: impl Fn(&str) -> bool) {
        let (gone, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(r, cycle)| cycle.is_none() && !known(&r.image));
        self.waiting = rest;
        for (request, _) in gone {
            let _ = request.reply.send(Err(PollRefused::Removed));
        }
    }
}
