//! The long-running service: `image-updater run`.
//!
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
pub mod reload;
pub mod report;
pub mod safety;
pub mod schedule;
pub mod systemd;
pub mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use engine::{BranchReport, Check, Engine, Report, Shared};
use reload::Trigger;
use schedule::{Feedback, Schedule};

use crate::cluster::handover::Handover;
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
    let state_dir = options
        .state_dir
        .clone()
        .unwrap_or_else(|| config.settings.state_dir.clone());
    crate::private::create_dir(&state_dir)
        .map_err(|e| crate::private::state_dir_error(&state_dir, &e))?;
    let mut shared = Shared::open(state_dir);
    let listen = options.listen.unwrap_or(config.settings.listen);
    let listener = http::endpoints::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    // Its allowance follows the budget plan, set once the schedule has one (see `planned`).
    let health = Arc::new(http::Health::new(http::MIN_ALLOWANCE));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (poll_tx, mut poll_rx) = mpsc::channel::<control::PollRequest>(16);
    let served = listener.local_addr().unwrap_or(listen);
    let control = control::ControlFile::create(&shared.state_dir, served).map_err(|e| {
        format!(
            "cannot write {}: {e}",
            control::ControlFile::path(&shared.state_dir).display()
        )
    })?;
    let server = Arc::new(http::Server {
        health: health.clone(),
        metrics: shared.metrics.clone(),
        registry_metrics: shared.registry_metrics.clone(),
        control: Some((control, poll_tx)),
    });
    // Registry push events, when [webhooks] is configured.
    let (push_tx, mut push_rx) = mpsc::channel::<Vec<webhook::Pushed>>(64);
    let webhook_task = match (&config.webhooks, webhook::secret(&config).await?) {
        (Some(w), Some(secret)) => {
            let tls = match &w.tls {
                Some(t) => Some(Arc::new(
                    http::tls::Certificates::load(&t.certificate, &t.key)
                        .map_err(|e| format!("webhooks: {e}"))?,
                )),
                None => None,
            };
            let listener = tokio::net::TcpListener::bind(w.listen)
                .await
                .map_err(|e| format!("cannot listen for webhooks on {}: {e}", w.listen))?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!(listen = %w.listen, scheme, "accepting registry webhooks on POST /webhook");
            Some(tokio::spawn(webhook::serve(
                listener,
                tls,
                Arc::new(secret),
                push_tx.clone(),
                stop_tx.subscribe(),
            )))
        }
        _ => None,
    };
    // Served last, so that when /healthz answers, every listener is bound.
    let server_task = tokio::spawn(server.serve(listener, stop_rx));
    tracing::info!(%listen, "serving /metrics, /healthz and /readyz");
    let (reload_tx, mut reload_rx) = mpsc::channel::<Trigger>(1);
    let _watcher = match reload::watch(&options.config_path, reload_tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP");
            None
        }
    };
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;

    let mut source = fingerprint(&std::fs::read(&options.config_path).unwrap_or_default());
    // What this replica's share of the work is computed from, published beside its key.
    let work_tx = watch::Sender::new(crate::cluster::fingerprint(&config));
    // With [cluster], the live replicas divide the images; read once, at start.
    let (mut members, cluster_task) = match &config.cluster {
        Some(cluster) => {
            let me = crate::cluster::replica_id();
            tracing::info!(replica = %me, cluster = %cluster.name, endpoints = ?cluster.endpoints, "cluster: joining");
            shared.tuning.replica = Some(me.clone());
            let handover = Arc::new(Handover::new(
                cluster.clone(),
                me.clone(),
                shared.cache.clone(),
            ));
            health
                .foreign_grace
                .store(cluster.lease.as_secs(), Ordering::Relaxed);
            let (rx, session, task) = crate::cluster::etcd::join(
                cluster.clone(),
                me,
                work_tx.subscribe(),
                stop_tx.subscribe(),
            );
            // Writes take their branch's lock through this replica's session.
            let _ = shared.cluster.set(session);
            let _ = shared.handover.set(handover);
            let _ = shared.members.set(rx.clone());
            (Some(rx), Some(task))
        }
        None => (None, None),
    };
    // Pushes other replicas received for images this one owns.
    let (mut pokes, pokes_task) = match shared.handover.get() {
        Some(h) => {
            let (rx, task) = crate::cluster::pokes::follow(h.clone(), stop_tx.subscribe());
            (Some(rx), Some(task))
        }
        None => (None, None),
    };
    let mut engine = Arc::new(Engine::new(Arc::new(config), &shared)?);
    let mut owned = owned_by(members.as_ref(), &engine);
    let mut schedule = Schedule::new(&engine.config, |alias| shared.status.checked(alias));
    planned(&schedule, &engine.config, &shared, &health);
    health.images.store(schedule.len(), Ordering::Relaxed);
    let mut lanes: BTreeMap<Lane, Running> = BTreeMap::new();
    // Images taken over from another replica and not polled here since.
    let mut adopting: std::collections::HashSet<String> = std::collections::HashSet::new();
    // In a cluster, polls start JOIN_SETTLE after this replica first sees itself live: the
    // replicas started with it join meanwhile and the images are divided before anything is
    // polled. (Otherwise the first to join owns every image for a moment, and polls them all
    // at the whole of each registry's rate.)
    let mut settled = members.is_none();
    let mut settle_at: Option<tokio::time::Instant> = None;
    if let Some(m) = &members
        && m.borrow().live.contains(&m.borrow().me)
    {
        settle_at = Some(tokio::time::Instant::now() + JOIN_SETTLE);
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<LaneDone>();
    let mut waiters = control::Waiters::default();
    let mut cycles: u64 = 0;
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    // While a registry is down, one cheap request every PROBE_EVERY finds out when it is back.
    let mut probe_tick = tokio::time::interval(PROBE_EVERY);
    probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel::<(String, bool)>();
    let mut probing: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    systemd::check_socket();
    let watchdog = systemd::watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    systemd::ready();
    tracing::info!(images = schedule.len(), "running");

    loop {
        // Images whose lane is busy wait for it; the others are due on their own time. In a
        // cluster, only the images this replica owns now.
        let idle = |alias: &str| {
            settled
                && !lanes.contains_key(&Lane::of(&engine, alias, &adopting))
                && owned.as_ref().is_none_or(|o| o.contains(alias))
        };
        let next = schedule.next_due_among(idle);
        tokio::select! {
            _ = tokio::time::sleep_until(next.unwrap_or_else(tokio::time::Instant::now)), if next.is_some() => {
                let now = tokio::time::Instant::now();
                let due = schedule.due_among(now, idle);
                let mut by_lane: BTreeMap<Lane, Vec<String>> = BTreeMap::new();
                for alias in due {
                    let lane = Lane::of(&engine, &alias, &adopting);
                    let batch = by_lane.entry(lane).or_default();
                    // The rest stay due: the lane takes them when this cycle ends.
                    if batch.len() < MAX_CYCLE_IMAGES {
                        batch.push(alias);
                    }
                }
                for (lane, due) in by_lane {
                    for alias in &due {
                        shared.metrics.poll_lag(&lane.registry, schedule.lag(alias, now));
                    }
                    cycles = cycles.wrapping_add(1);
                    waiters.started(cycles, &due);
                    let running = start_lane(&engine, cycles, lane.clone(), due, done_tx.clone());
                    lanes.insert(lane, running);
                }
            }
            Some(done) = done_rx.recv() => {
                lanes.remove(&done.lane);
                if done.lane.taken_over {
                    for alias in &done.due {
                        adopting.remove(alias);
                    }
                }
                waiters.finished(done.id, done.outcome.as_ref().map(|(_, r)| r).map_err(String::as_str));
                let feedback = match done.outcome {
                    Ok((feedback, _)) => feedback,
                    Err(why) => {
                        shared.metrics.cycle_failed(&done.lane.registry);
                        tracing::error!(registry = %done.lane, images = ?done.due, "{why}; its images are rescheduled as failed");
                        done.due.iter().map(|a| (a.clone(), Feedback { failed: true, ..Feedback::default() })).collect()
                    }
                };
                if feedback.iter().any(|(_, f)| !f.failed) {
                    health.succeeded();
                }
                for (alias, f) in feedback {
                    schedule.polled(&alias, f);
                }
                health.ready.store(true, Ordering::Relaxed);
            }
            Some(trigger) = reload_rx.recv() => {
                if trigger == Trigger::File {
                    tokio::time::sleep(DEBOUNCE).await;
                    while reload_rx.try_recv().is_ok() {}
                }
                if let Some(config) = reload_config(&options, trigger, &mut source, &shared, &engine.config).await {
                    match Engine::new(Arc::new(config), &shared) {
                        // A cycle in flight keeps the engine it holds; the next one gets this.
                        Ok(new) => {
                            shared.metrics.reloaded(true);
                            tracing::info!(file = %options.config_path.display(), images = new.config.images.len(), "config reloaded");
                            schedule.reconcile(&new.config, |alias| shared.status.checked(alias));
                            planned(&schedule, &new.config, &shared, &health);
                            waiters.retain_known(|alias| new.config.images.contains_key(alias));
                            health.images.store(schedule.len(), Ordering::Relaxed);
                            engine = Arc::new(new);
                            work_tx.send_if_modified(|work| {
                                let now = crate::cluster::fingerprint(&engine.config);
                                (now != *work).then(|| *work = now).is_some()
                            });
                            owned = take_over(&shared, owned, owned_by(members.as_ref(), &engine));
                            shared.forget_mirrors().await;
                        }
                        Err(e) => {
                            shared.metrics.reloaded(false);
                            tracing::error!(error = %e, "cannot apply the new config; keeping the old one");
                        }
                    }
                }
                systemd::ready();
            }
            Some(request) = poll_rx.recv() => {
                match poll_refusal(&engine.config, &request) {
                    Some(refused) => {
                        let _ = request.reply.send(Err(refused));
                    }
                    None => {
                        tracing::info!(image = %request.image, "checking now: `image-updater poll` asked");
                        schedule.due_now(std::slice::from_ref(&request.image));
                        waiters.push(request);
                    }
                }
            }
            Some(pushed) = push_rx.recv() => {
                let aliases = webhook::matching(&engine.config, &pushed);
                // In a cluster, the images of other replicas go to their owners.
                let (mine, theirs): (Vec<String>, Vec<String>) = aliases
                    .into_iter()
                    .partition(|a| owned.as_ref().is_none_or(|o| o.contains(a)));
                if !mine.is_empty() {
                    tracing::info!(images = ?mine, "checking now: a registry reported a push");
                    schedule.due_now(&mine);
                }
                if let (Some(h), false) = (shared.handover.get(), theirs.is_empty()) {
                    tracing::info!(images = ?theirs, "a registry reported a push; passing it on to the images' owners");
                    let session = shared.cluster.get().and_then(|s| s.borrow().clone());
                    let h = h.clone();
                    tokio::spawn(async move { crate::cluster::pokes::send(&h, session, &theirs).await });
                }
            }
            Some(poked) = async { pokes.as_mut().expect("clustered").recv().await }, if pokes.is_some() => {
                let mine: Vec<String> = poked
                    .into_iter()
                    .filter(|a| owned.as_ref().is_some_and(|o| o.contains(a)))
                    .collect();
                if !mine.is_empty() {
                    // A poke may also say another replica changed the image's record (a pull
                    // request it wrote): read it again before the check.
                    if let Some(h) = shared.handover.get() {
                        h.taken(mine.iter().cloned());
                    }
                    tracing::info!(images = ?mine, "checking now: another replica received a push for them, or changed their record");
                    schedule.due_now(&mine);
                }
            }
            _ = tokio::time::sleep_until(settle_at.unwrap_or_else(tokio::time::Instant::now)), if !settled && settle_at.is_some() => {
                settled = true;
                tracing::info!(seconds = JOIN_SETTLE.as_secs(), "cluster: the members had time to join; polling");
            }
            _ = probe_tick.tick() => {
                for (lane, client) in engine.registries().down() {
                    // A cycle of the lane running finds out for itself.
                    let busy = lanes.keys().any(|l| l.registry == lane);
                    if busy || !probing.insert(lane.to_string()) {
                        continue;
                    }
                    let (client, lane, tx) = (client.clone(), lane.to_string(), probe_tx.clone());
                    tokio::spawn(async move {
                        // Jitter: replicas and daemons probing one registry spread out.
                        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..500))).await;
                        let up = client.probe().await;
                        let _ = tx.send((lane, up));
                    });
                }
            }
            Some((lane, up)) = probe_rx.recv() => {
                probing.remove(&lane);
                if up {
                    let back = schedule.recovered(|alias| {
                        lane_of(&engine, alias) == lane && owned.as_ref().is_none_or(|o| o.contains(alias))
                    });
                    if back > 0 {
                        tracing::info!(registry = %lane, images = back, "the registry answers again; polling the images that failed now");
                    }
                }
            }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = reload_tx.try_send(Trigger::Signal);
            }
            _ = heartbeat.tick() => {
                health.beat();
                memory::trim();
                // A replica in the cluster that owns no image makes progress by being there.
                if let (Some(m), Some(o)) = (&members, &owned)
                    && o.is_empty()
                    && m.borrow().live.contains(&m.borrow().me)
                {
                    health.succeeded();
                    health.ready.store(true, Ordering::Relaxed);
                }
            }
            Ok(()) = async { members.as_mut().expect("clustered").changed().await }, if members.is_some() => {
                let before = owned.clone();
                owned = take_over(&shared, owned, owned_by(members.as_ref(), &engine));
                // Taken over from a replica that left: polled in a lane of their own. (A
                // replica that owned nothing yet is starting, and has nothing to delay.)
                if let (Some(before), Some(now)) = (&before, &owned)
                    && !before.is_empty()
                {
                    adopting.extend(now.difference(before).cloned());
                }
                adopting.retain(|a| owned.as_ref().is_some_and(|o| o.contains(a)));
                if settle_at.is_none()
                    && let Some(m) = &members
                    && m.borrow().live.contains(&m.borrow().me)
                {
                    settle_at = Some(tokio::time::Instant::now() + JOIN_SETTLE);
                }
                let count = owned.as_ref().map_or(0, |o| o.len());
                let (live, foreign) = members.as_ref().map_or((0, 0), |m| {
                    let view = m.borrow();
                    (view.live.len(), view.foreign.len())
                });
                shared.metrics.owned_images(count, live, foreign);
                health.saw_foreign(foreign);
                // Each request waits for one slot per live replica: together they keep to
                // each registry's rate.
                let share = u32::try_from(live).unwrap_or(u32::MAX).max(1);
                shared.tuning.share.store(share, Ordering::Relaxed);
                tracing::info!(owned = count, of = engine.config.images.len(), members = live, "cluster: images owned by this replica");
                if count == 0 && !engine.config.images.is_empty() {
                    let view = members.as_ref().map(|m| m.borrow().clone()).unwrap_or_default();
                    let why = if !view.live.contains(&view.me) {
                        "it is outside the cluster until it holds a lease".to_string()
                    } else {
                        format!("the other {} live replicas of this config own them all", live.saturating_sub(1))
                    };
                    tracing::info!(images = engine.config.images.len(), members = ?view.live, foreign = view.foreign.len(), "cluster: this replica owns none of the images: {why}");
                }
            }
            // The watchdog is fed only while polling makes progress: systemd restarts a daemon
            // whose loop turns but whose polls have all hung or failed for too long.
            _ = watchdog_tick.tick(), if watchdog.is_some() && health.healthy() => systemd::watchdog(),
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    systemd::stopping();
    if !lanes.is_empty() {
        tracing::info!(grace = ?SHUTDOWN_GRACE, cycles = lanes.len(), "shutting down: letting running cycles finish");
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for (lane, mut running) in lanes {
            if tokio::time::timeout_at(deadline, &mut running.supervisor)
                .await
                .is_err()
            {
                tracing::warn!(registry = %lane, "the cycle did not finish in time; abandoning it (nothing is half-pushed)");
                running.cycle.abort();
                running.supervisor.abort();
            }
        }
    }
    shared.save();
    let _ = stop_tx.send(true);
    let _ = server_task.await;
    if let Some(task) = webhook_task {
        let _ = task.await;
    }
    if let Some(task) = pokes_task {
        let _ = task.await;
    }
    // The lease is revoked on the way out: the others take this replica's images at once.
    if let Some(task) = cluster_task {
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    tracing::info!("stopped");
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

/// What runs one cycle at a time: a registry's images, or the images of a registry this
/// replica has just taken over from another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Lane {
    /// The registry's name, as the budget plan names it.
    registry: String,
    taken_over: bool,
}

impl Lane {
    fn of(engine: &Engine, alias: &str, adopting: &std::collections::HashSet<String>) -> Lane {
        Lane {
            registry: lane_of(engine, alias),
            taken_over: adopting.contains(alias),
        }
    }
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.registry)?;
        if self.taken_over {
            f.write_str(" (images taken over)")?;
        }
        Ok(())
    }
}

/// A lane's cycle in flight: the task that runs it, and the task that waits for it.
struct Running {
    cycle: tokio::task::AbortHandle,
    supervisor: JoinHandle<()>,
}

/// A lane's cycle, finished: the scheduler's feedback and the cycle's report, or why there
/// are none.
struct LaneDone {
    id: u64,
    lane: Lane,
    due: Vec<String>,
    outcome: Result<(Vec<(String, Feedback)>, Report), String>,
}

/// Why a poll request names nothing the running config has.
fn poll_refusal(config: &Config, request: &control::PollRequest) -> Option<control::PollRefused> {
    let Some(image) = config.images.get(&request.image) else {
        let known: Vec<&str> = config.images.keys().map(String::as_str).collect();
        return Some(control::PollRefused::UnknownImage(
            request.image.clone(),
            known.join(", "),
        ));
    };
    let env = request.env.as_ref()?;
    if image.deployments.iter().any(|d| d.environment == *env) {
        return None;
    }
    let known: Vec<&str> = image
        .deployments
        .iter()
        .map(|d| d.environment.as_str())
        .collect();
    Some(control::PollRefused::UnknownEnvironment(
        request.image.clone(),
        env.clone(),
        known.join(", "),
    ))
}

/// The images this replica owns among the live replicas (`None` outside a cluster: all).
/// Images are divided by registry and repository, so one replica lists each repository's
/// tags. Computed when the members or the config change, not at every turn of the loop.
fn owned_by(
    members: Option<&watch::Receiver<crate::cluster::Members>>,
    engine: &Engine,
) -> Option<std::collections::HashSet<String>> {
    let view = members?.borrow().clone();
    Some(
        engine
            .config
            .images
            .values()
            .filter(|image| view.owns(&image.reference.repository()))
            .map(|image| image.alias.clone())
            .collect(),
    )
}

/// The images owned now (`new`); those not owned before are marked for taking over, so the
/// last owner's record is read before they are checked.
fn take_over(
    shared: &Shared,
    old: Option<std::collections::HashSet<String>>,
    new: Option<std::collections::HashSet<String>>,
) -> Option<std::collections::HashSet<String>> {
    if let (Some(h), Some(now)) = (shared.handover.get(), &new) {
        let before = old.unwrap_or_default();
        h.taken(now.difference(&before).cloned());
    }
    new
}

/// The lane of an image, as the budget plan names it: its registry's name (images of
/// registries the config does not list share the lane of their host).
fn lane_of(engine: &Engine, alias: &str) -> String {
    engine
        .config
        .images
        .get(alias)
        .map(budget::lane)
        .unwrap_or_default()
}

/// Runs one lane's cycle in its own task, and a supervisor that reports how it ended: a panic
/// or a cycle past [`CYCLE_DEADLINE`] becomes an error, never a lane that stays busy.
fn start_lane(
    engine: &Arc<Engine>,
    id: u64,
    lane: Lane,
    due: Vec<String>,
    done: mpsc::UnboundedSender<LaneDone>,
) -> Running {
    let (cycle_engine, cycle_due) = (engine.clone(), due.clone());
    let mut cycle = tokio::spawn(async move {
        let report = cycle_engine.cycle(&cycle_due, false).await;
        (feedback(&cycle_engine, &cycle_due, &report), report)
    });
    let abort = cycle.abort_handle();
    let supervisor = tokio::spawn(async move {
        let outcome = match tokio::time::timeout(CYCLE_DEADLINE, &mut cycle).await {
            Ok(Ok(feedback)) => Ok(feedback),
            Ok(Err(e)) if e.is_panic() => Err(format!(
                "the cycle panicked: {}",
                fault::panic_text(&*e.into_panic())
            )),
            Ok(Err(_)) => Err("the cycle was cancelled".to_string()),
            Err(_) => {
                cycle.abort();
                Err(format!(
                    "the cycle ran longer than {}s and was abandoned",
                    CYCLE_DEADLINE.as_secs()
                ))
            }
        };
        let _ = done.send(LaneDone {
            id,
            lane,
            due,
            outcome,
        });
    });
    Running {
        cycle: abort,
        supervisor,
    }
}

/// Says once, after a start or a reload, which registries' budgets stretch the intervals, and
/// gives the metrics and the health check the plan.
fn planned(schedule: &Schedule, config: &Config, shared: &Shared, health: &http::Health) {
    let plan = schedule.plan();
    for warning in plan.warnings() {
        tracing::warn!("{warning}");
    }
    for (lane, round) in schedule.first_round() {
        // Worth saying when it outlasts a batch: the operator sees why images are not all
        // polled at once.
        if round.length > schedule::BATCH_WINDOW {
            tracing::info!(
                registry = %lane,
                images = round.images,
                seconds = round.length.as_secs(),
                "first polls spread over {}s at the registry's request budget",
                round.length.as_secs()
            );
        }
    }
    shared.metrics.planned(plan, config);
    health.set_allowance(allowance(config, plan));
}

/// How long the daemon may go without a successful poll before it reports itself unhealthy:
/// `unhealthy_after` of the longest image interval.
fn allowance(config: &Config, plan: &budget::Plan) -> Duration {
    // Intervals as the budget stretches them: a registry polled less often is not a stall.
    let longest = config
        .images
        .values()
        .map(|i| plan.interval(i))
        .max()
        .unwrap_or(config.settings.interval);
    longest.saturating_mul(config.settings.unhealthy_after)
}

/// What the scheduler needs to know about each polled image.
fn feedback(engine: &Engine, due: &[String], report: &Report) -> Vec<(String, Feedback)> {
    due.iter()
        .filter_map(|alias| {
            let image = engine.config.images.get(alias)?;
            let client = engine.registries().for_image(image);
            let failed = report
                .checks
                .iter()
                .any(|c| c.alias == *alias && c.result.is_err());
            Some((
                alias.clone(),
                Feedback {
                    failed,
                    budget_low: client.is_some_and(|c| c.budget().is_low()),
                    blocked_until: client
                        .and_then(|c| c.blocked_until())
                        .map(tokio::time::Instant::from_std),
                },
            ))
        })
        .collect()
}
