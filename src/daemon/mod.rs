//! The long-running service: `image-updater run`.
//!
//! - `service.rs`: the running service as a value that owns its events, listeners, lanes
//!   and shutdown; [`run`] starts one and serves until SIGTERM or SIGINT.
//! - [`engine`]: one cycle: poll, choose, write one commit per branch; [`report`]: what it
//!   found and did.
//! - [`schedule`]: when each image is polled next (intervals, jitter, backoff).
//! - [`budget`]: the intervals each registry's request budget allows.
//! - [`reload`]: the config file watch and SIGHUP.
//! - what survives a restart, in the state dir, is [`crate::state`]'s.
//! - [`metrics`], [`http`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`systemd`]: `Type=notify` readiness, reload and watchdog messages.
//!
//! Each registry has its own lane: its due images are polled in a cycle of their own, so a
//! slow, failing or rate-limited registry never holds up another's images. In a cluster,
//! images this replica has just taken over from a dead one get a lane of their own beside
//! their registry's, so that what their first poll must still resolve never delays the
//! replica's own images. A lane runs one cycle at a time; cycles of different lanes that
//! write one branch take turns on its mirror, and each fetches before it commits. A cycle that panics or outlives [`CYCLE_DEADLINE`] is
//! caught, logged and counted, and its images are rescheduled as failed.
//!
//! Shutdown (SIGTERM, SIGINT) lets running cycles finish for up to [`SHUTDOWN_GRACE`], then
//! abandons them: a commit exists only in the mirror until its push, and a push is atomic at
//! the server, so an abandoned cycle leaves each branch at its old commit or its new one.

pub mod budget;
pub mod control;
pub mod engine;
pub mod fault;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod notify;
pub mod overview;
pub mod reload;
pub mod report;
pub mod safety;
pub mod schedule;
mod service;
pub mod systemd;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use engine::{BranchReport, Check, Engine, Report, Shared};
use reload::Trigger;

use crate::config::{self, Config};

/// How long a replica joining a cluster waits before its first polls, for the replicas started
/// with it to join too.
const JOIN_SETTLE: Duration = Duration::from_secs(2);
/// How often a registry that is down is asked whether it is back
/// ([`crate::registry::Client::probe`]).
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long a running cycle may take to finish after SIGTERM before it is abandoned.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// The longest one lane's cycle may run before it is abandoned as stuck.
pub const CYCLE_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// How long file events are gathered before the config is read again.
const DEBOUNCE: Duration = Duration::from_millis(300);
/// Images one cycle of a lane polls at most. A cycle keeps each image's report until it
/// commits, so all 5,000 images of a start falling due at once (a registry with a large
/// budget) made one cycle that held them all, and the heap kept that peak's pages after it;
/// in cycles of this size a branch still gets one commit per cycle.
const MAX_CYCLE_IMAGES: usize = 250;
/// The pushed tags remembered per image until its check starts; older ones are dropped (the
/// check lists the tags when none of those it knows wins).
const MAX_PUSHED_TAGS: usize = 32;
const HEARTBEAT: Duration = Duration::from_secs(5);

pub struct Options {
    pub config_path: PathBuf,
    /// Overrides `settings.state_dir`.
    pub state_dir: Option<PathBuf>,
    /// Overrides `settings.listen`.
    pub listen: Option<SocketAddr>,
}

/// Runs until SIGTERM or SIGINT. `config` is the already validated initial config.
pub async fn run(options: Options, config: Config) -> Result<(), String> {
    let mut daemon = service::Daemon::start(options, config).await?;
    daemon.serve().await;
    daemon.stop().await;
    Ok(())
}

/// How long a config file's bytes must stay the same before they are applied: a file written
/// in place in several steps (`cp`, `echo >>`, an editor that truncates first) is read only
/// once the writer is done. Editors that save by renaming a new file over the old one are
/// atomic and need no wait beyond this.
pub const STABLE_FOR: Duration = Duration::from_secs(1);
/// A file still changing after this is left until its next change.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// The file's bytes once they have stopped changing for [`STABLE_FOR`]; `None` when it cannot
/// be read or keeps changing past [`SETTLE_LIMIT`].
async fn settled(path: &std::path::Path) -> Option<Vec<u8>> {
    let started = tokio::time::Instant::now();
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            // Mid-swap (a rename or a ConfigMap update): the next event brings it back.
            tracing::warn!(file = %path.display(), error = %e, "cannot read the config; keeping the running one");
            return None;
        }
    };
    loop {
        tokio::time::sleep(STABLE_FOR).await;
        let again = std::fs::read(path).ok()?;
        if again == bytes {
            return Some(bytes);
        }
        if started.elapsed() > SETTLE_LIMIT {
            tracing::warn!(file = %path.display(), "the config kept changing for 10 s; keeping the running one until it settles");
            return None;
        }
        bytes = again;
    }
}

/// What tells a changed config file from a touched one: its SHA-256, rather than a copy of
/// the file (which at 20,000 images is megabytes kept for this).
fn fingerprint(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// Reads the config again. `None` when nothing is to be applied: unchanged (file events
/// only), invalid, or emptied of every image or environment without saying so; the running
/// config stays and the reason is logged.
async fn reload_config(
    options: &Options,
    trigger: Trigger,
    source: &mut [u8; 32],
    shared: &Shared,
    running: &Config,
) -> Option<Config> {
    // SIGHUP reads the file as it is then; a file event waits for the bytes to settle.
    let bytes = match trigger {
        Trigger::Signal => match std::fs::read(&options.config_path) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(file = %options.config_path.display(), error = %e, "cannot read the config; keeping the running one");
                return None;
            }
        },
        Trigger::File => settled(&options.config_path).await?,
    };
    let print = fingerprint(&bytes);
    if trigger == Trigger::File && print == *source {
        return None;
    }
    systemd::reloading();
    *source = print;
    // The bytes read are what is applied, not a later read of the file. Bytes that are not
    // UTF-8 are refused, as `check` refuses them: read lossily, an `\xff` inside a glob would
    // change what it matches.
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => {
            shared.metrics.reloaded(false);
            tracing::error!(file = %options.config_path.display(), "the new config is not UTF-8 (at byte {}); still running the previous one", e.valid_up_to());
            return None;
        }
    };
    let config = match config::from_source(&options.config_path, text) {
        Ok(config) => config,
        Err(diagnostics) => {
            shared.metrics.reloaded(false);
            tracing::error!(
                file = %options.config_path.display(),
                "the new config is invalid; still running the previous one:\n{diagnostics}"
            );
            return None;
        }
    };
    if let Some(why) = drops_everything(&bytes, running, &config) {
        shared.metrics.reloaded(false);
        tracing::error!(file = %options.config_path.display(), "{why}; still running the previous one");
        return None;
    }
    for line in policy_diff(running, &config) {
        tracing::info!("reload: {line}");
    }
    Some(config)
}

/// Why a reload that leaves no image or no environment is refused: a truncated or emptied
/// file looks like that. A file that declares the empty table (`[images]` with nothing in it)
/// means it, and is applied.
fn drops_everything(bytes: &[u8], running: &Config, new: &Config) -> Option<String> {
    let declared: toml::Table = std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| toml::from_str(t.trim_start_matches('\u{feff}')).ok())
        .unwrap_or_default();
    for (section, before, after) in [
        ("images", running.images.len(), new.images.len()),
        (
            "environments",
            running.environments.len(),
            new.environments.len(),
        ),
    ] {
        if before > 0 && after == 0 && !declared.contains_key(section) {
            return Some(format!(
                "the new config has no [{section}] at all (an empty or cut-short file?); to remove every one of them, keep an empty [{section}] table in the file"
            ));
        }
    }
    None
}

/// What a reload changes in each image's policy, one line per change, for the log.
fn policy_diff(old: &Config, new: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    for alias in old.images.keys().filter(|a| !new.images.contains_key(*a)) {
        lines.push(format!("image {alias} removed"));
    }
    for (alias, image) in &new.images {
        let Some(before) = old.images.get(alias) else {
            lines.push(format!("image {alias} added"));
            continue;
        };
        for d in &image.deployments {
            match before
                .deployments
                .iter()
                .find(|b| b.environment == d.environment)
            {
                None => lines.push(format!("image {alias} now deployed to {}", d.environment)),
                // Policies hold compiled patterns: compare what they print.
                Some(b)
                    if format!("{:?}{:?}", b.policy, b.safety)
                        != format!("{:?}{:?}", d.policy, d.safety) =>
                {
                    lines.push(format!(
                        "image {alias} in {}: {} -> {}",
                        d.environment,
                        describe(b),
                        describe(d)
                    ))
                }
                Some(_) => {}
            }
        }
        for b in &before.deployments {
            if !image
                .deployments
                .iter()
                .any(|d| d.environment == b.environment)
            {
                lines.push(format!(
                    "image {alias} no longer deployed to {}",
                    b.environment
                ));
            }
        }
    }
    lines
}

fn describe(d: &config::Deployment) -> String {
    let mut text = match &d.policy.strategy {
        crate::select::Strategy::Semver { constraint, .. } => {
            format!("semver `{}`", constraint.as_str())
        }
        other => other.to_string(),
    };
    if let Some(pin) = &d.safety.pin {
        text.push_str(&format!(", pinned to {pin}"));
    }
    if d.safety.allow_downgrade {
        text.push_str(", downgrades allowed");
    }
    text
}
