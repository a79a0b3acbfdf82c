//! The running service as a value: [`Daemon`] owns what the loop listens to (timers, the
//! listeners' channels, signals, the cluster's member view), the state of the loop (the
//! engine, the schedule, the lanes and their cycles), and its shutdown. Each event has a
//! method of its own; [`super::run`] starts one, serves until SIGTERM or SIGINT, and stops it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::reload::{self, Trigger};
use super::schedule::{Feedback, Schedule};
use super::{
    CYCLE_DEADLINE, DEBOUNCE, Engine, HEARTBEAT, JOIN_SETTLE, MAX_CYCLE_IMAGES, MAX_PUSHED_TAGS,
    Options, PROBE_EVERY, Report, SHUTDOWN_GRACE, Shared, budget, control, fault, fingerprint,
    http, memory, reload_config, systemd, webhook,
};
use crate::cluster::handover::Handover;
use crate::config::Config;

/// The running service: what it listens to, the tasks it started, and the state of its loop.
/// It owns its shutdown: [`Daemon::stop`] lets cycles finish, saves the state, stops the
/// listeners and gives up the cluster lease.
pub(super) struct Daemon {
    options: Options,
    shared: Shared,
    health: Arc<http::Health>,
    events: Events,
    tasks: Tasks,
    reload_tx: mpsc::Sender<Trigger>,
    done_tx: mpsc::UnboundedSender<LaneDone>,
    probe_tx: mpsc::UnboundedSender<(String, bool)>,
    /// What this replica's share of the work is computed from, published beside its key.
    work_tx: watch::Sender<String>,
    /// The running config, for the status page.
    config_tx: watch::Sender<Arc<Config>>,
    /// The config file's fingerprint as last applied.
    source: [u8; 32],
    engine: Arc<Engine>,
    /// In a cluster, the images this replica owns now (`None` outside a cluster: all).
    owned: Option<std::collections::HashSet<String>>,
    schedule: Schedule,
    lanes: BTreeMap<Lane, Running>,
    /// Images taken over from another replica and not polled here since.
    adopting: std::collections::HashSet<String>,
    /// Images a registry reported a push of (or `poll` asked for), not yet started: they go
    /// in their registry's express lane, so they never wait behind a cycle of due polls.
    express: std::collections::HashSet<String>,
    /// The tags push events reported for images not yet started, by alias (at most
    /// [`MAX_PUSHED_TAGS`] each): their check may choose among these and the tags listed a
    /// little while ago instead of listing again (see [`crate::poll::Cycle::assumed_tags`]).
    pushed_tags: HashMap<String, Vec<crate::poll::PushedTag>>,
    /// Images in a cycle now, whatever its lane: an image is never checked twice at once.
    in_flight: std::collections::HashSet<String>,
    /// In a cluster, polls start [`JOIN_SETTLE`] after this replica first sees itself live:
    /// the replicas started with it join meanwhile and the images are divided before anything
    /// is polled. (Otherwise the first to join owns every image for a moment, and polls them
    /// all at the whole of each registry's rate.)
    settled: bool,
    settle_at: Option<tokio::time::Instant>,
    waiters: control::Waiters,
    cycles: u64,
    /// Registries being asked whether they are back.
    probing: std::collections::BTreeSet<String>,
    watchdog: Option<Duration>,
}

/// What the daemon's loop waits on.
struct Events {
    poll_rx: mpsc::Receiver<control::PollRequest>,
    push_rx: mpsc::Receiver<Vec<webhook::Pushed>>,
    reload_rx: mpsc::Receiver<Trigger>,
    done_rx: mpsc::UnboundedReceiver<LaneDone>,
    probe_rx: mpsc::UnboundedReceiver<(String, bool)>,
    /// With `[cluster]`: the live replicas, and pushes other replicas received for images
    /// this one owns.
    members: Option<watch::Receiver<crate::cluster::Members>>,
    pokes: Option<mpsc::Receiver<Vec<String>>>,
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    heartbeat: tokio::time::Interval,
    /// While a registry is down, one cheap request every [`PROBE_EVERY`] finds out when it is
    /// back.
    probe_tick: tokio::time::Interval,
    watchdog_tick: tokio::time::Interval,
}

/// What the daemon started beside its loop, stopped in [`Daemon::stop`].
struct Tasks {
    stop_tx: watch::Sender<bool>,
    server: JoinHandle<()>,
    webhook: Option<JoinHandle<()>>,
    pokes: Option<JoinHandle<()>>,
    cluster: Option<JoinHandle<()>>,
    _watcher: Option<::notify::RecommendedWatcher>,
}

impl Daemon {
    /// Binds the listeners, joins the cluster, and plans the first polls.
    pub(super) async fn start(options: Options, config: Config) -> Result<Daemon, String> {
        let mut shared = open_state(&options, &config)?;
        // Its allowance follows the budget plan, set once the schedule has one (see `planned`).
        let health = Arc::new(http::Health::new(http::MIN_ALLOWANCE));
        let (stop_tx, stop_rx) = watch::channel(false);
        let config = Arc::new(config);
        let config_tx = watch::Sender::new(config.clone());
        let listeners = Listeners::start(
            &options,
            &config,
            &shared,
            &health,
            config_tx.subscribe(),
            stop_rx,
        )
        .await?;
        let (reload_tx, reload_rx) = mpsc::channel::<Trigger>(1);
        let watcher = reload::watch(&options.config_path, reload_tx.clone())
            .inspect_err(
                |e| tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP"),
            )
            .ok();
        let [hangup, terminate, interrupt] = signals()?;
        let source = fingerprint(&std::fs::read(&options.config_path).unwrap_or_default());
        let work_tx = watch::Sender::new(crate::cluster::fingerprint(&config));
        let (members, cluster) = join_cluster(&config, &mut shared, &health, &work_tx, &stop_tx);
        // Pushes other replicas received for images this one owns.
        let (pokes, pokes_task) = shared
            .handover
            .get()
            .map(|h| crate::cluster::pokes::follow(h.clone(), stop_tx.subscribe()))
            .unzip();
        let engine = Arc::new(Engine::new(config, &shared)?);
        // The images owned from the start have their records read before their first
        // check too: the members may be known already, and then no change of them says so.
        let owned = take_over(&shared, None, owned_by(members.as_ref(), &engine));
        let schedule = Schedule::new(&engine.config, |alias| shared.status.checked(alias));
        planned(&schedule, &engine.config, &shared, &health);
        health.images.store(schedule.len(), Ordering::Relaxed);
        let settle_at = members
            .as_ref()
            .filter(|m| m.borrow().live.contains(&m.borrow().me))
            .map(|_| tokio::time::Instant::now() + JOIN_SETTLE);
        let (done_tx, done_rx) = mpsc::unbounded_channel::<LaneDone>();
        let (probe_tx, probe_rx) = mpsc::unbounded_channel::<(String, bool)>();
        let mut probe_tick = tokio::time::interval(PROBE_EVERY);
        probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (watchdog, watchdog_tick) = systemd_ready();
        tracing::info!(images = schedule.len(), "running");
        Ok(Daemon {
            settled: members.is_none(),
            events: Events {
                poll_rx: listeners.poll_rx,
                push_rx: listeners.push_rx,
                reload_rx,
                done_rx,
                probe_rx,
                members,
                pokes,
                hangup,
                terminate,
                interrupt,
                heartbeat: tokio::time::interval(HEARTBEAT),
                probe_tick,
                watchdog_tick,
            },
            tasks: Tasks {
                stop_tx,
                server: listeners.server,
                webhook: listeners.webhook,
                pokes: pokes_task,
                cluster,
                _watcher: watcher,
            },
            options,
            shared,
            health,
            reload_tx,
            done_tx,
            probe_tx,
            work_tx,
            config_tx,
            source,
            engine,
            owned,
            schedule,
            lanes: BTreeMap::new(),
            adopting: Default::default(),
            express: Default::default(),
            pushed_tags: Default::default(),
            in_flight: Default::default(),
            settle_at,
            waiters: control::Waiters::default(),
            cycles: 0,
            probing: Default::default(),
            watchdog,
        })
    }

    /// The loop: until SIGTERM or SIGINT, each event to its handler.
    pub(super) async fn serve(&mut self) {
        loop {
            let next = self.schedule.next_due_among(|alias| self.idle(alias));
            let settle_at = self.settle_at.filter(|_| !self.settled);
            let feed_watchdog = self.watchdog.is_some() && self.health.healthy();
            let ev = &mut self.events;
            tokio::select! {
                _ = tokio::time::sleep_until(next.unwrap_or_else(tokio::time::Instant::now)), if next.is_some() => self.start_due(),
                Some(done) = ev.done_rx.recv() => self.finished(done),
                Some(trigger) = ev.reload_rx.recv() => self.reload(trigger).await,
                Some(request) = ev.poll_rx.recv() => self.poll_asked(request),
                Some(pushed) = ev.push_rx.recv() => self.pushed(pushed),
                Some(poked) = async { ev.pokes.as_mut().expect("clustered").recv().await }, if ev.pokes.is_some() => self.poked(poked),
                _ = tokio::time::sleep_until(settle_at.unwrap_or_else(tokio::time::Instant::now)), if settle_at.is_some() => {
                    self.settled = true;
                    tracing::info!(seconds = JOIN_SETTLE.as_secs(), "cluster: the members had time to join; polling");
                }
                _ = ev.probe_tick.tick() => self.probe_down(),
                Some((lane, up)) = ev.probe_rx.recv() => self.probed(&lane, up),
                _ = ev.hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the config");
                    let _ = self.reload_tx.try_send(Trigger::Signal);
                }
                _ = ev.heartbeat.tick() => self.heartbeat(),
                Ok(()) = async { ev.members.as_mut().expect("clustered").changed().await }, if ev.members.is_some() => self.members_changed(),
                // The watchdog is fed only while polling makes progress: systemd restarts a
                // daemon whose loop turns but whose polls have all hung or failed too long.
                _ = ev.watchdog_tick.tick(), if feed_watchdog => systemd::watchdog(),
                _ = ev.terminate.recv() => break,
                _ = ev.interrupt.recv() => break,
            }
        }
    }

    /// The lane `alias` is checked in: images taken over apart (their records are read
    /// first), then images a push was reported for, then the registry's due polls.
    fn lane_of(&self, alias: &str) -> Lane {
        let taken_over = self.adopting.contains(alias);
        Lane {
            registry: lane_of(&self.engine, alias),
            taken_over,
            express: !taken_over && self.express.contains(alias),
        }
    }

    /// Whether `alias` may start a poll: it is in no cycle now, its lane is free, and in a
    /// cluster this replica owns it (and has let the members gather).
    fn idle(&self, alias: &str) -> bool {
        self.settled
            && !self.in_flight.contains(alias)
            && !self.lanes.contains_key(&self.lane_of(alias))
            && self.owned.as_ref().is_none_or(|o| o.contains(alias))
    }

    /// Starts a cycle in each free lane for its images that are due.
    fn start_due(&mut self) {
        let now = tokio::time::Instant::now();
        let due = self.schedule.due_among(now, |alias| self.idle(alias));
        let mut by_lane: BTreeMap<Lane, Vec<String>> = BTreeMap::new();
        for alias in due {
            let lane = self.lane_of(&alias);
            let batch = by_lane.entry(lane).or_default();
            // The rest stay due: the lane takes them when this cycle ends.
            if batch.len() < MAX_CYCLE_IMAGES {
                batch.push(alias);
            }
        }
        for (lane, due) in by_lane {
            let mut pushed = HashMap::new();
            for alias in &due {
                self.express.remove(alias);
                self.in_flight.insert(alias.clone());
                if let Some(tags) = self.pushed_tags.remove(alias) {
                    pushed.insert(alias.clone(), tags);
                }
            }
            for alias in &due {
                self.shared
                    .metrics
                    .poll_lag(&lane.registry, self.schedule.lag(alias, now));
            }
            self.cycles = self.cycles.wrapping_add(1);
            self.waiters.started(self.cycles, &due);
            let running = start_lane(
                &self.engine,
                self.cycles,
                lane.clone(),
                (due, pushed),
                self.done_tx.clone(),
            );
            self.lanes.insert(lane, running);
        }
    }

    /// A lane's cycle ended: its images are rescheduled by how their polls went.
    fn finished(&mut self, done: LaneDone) {
        self.lanes.remove(&done.lane);
        for alias in &done.due {
            self.in_flight.remove(alias);
        }
        if done.lane.taken_over {
            for alias in &done.due {
                self.adopting.remove(alias);
            }
        }
        self.waiters.finished(
            done.id,
            done.outcome
                .as_ref()
                .map(|(_, r)| r)
                .map_err(String::as_str),
        );
        let feedback = match done.outcome {
            Ok((feedback, _)) => feedback,
            Err(why) => {
                self.shared.metrics.cycle_failed(&done.lane.registry);
                tracing::error!(registry = %done.lane, images = ?done.due, "{why}; its images are rescheduled as failed");
                done.due
                    .iter()
                    .map(|a| {
                        let failed = Feedback {
                            failed: true,
                            ..Feedback::default()
                        };
                        (a.clone(), failed)
                    })
                    .collect()
            }
        };
        if feedback.iter().any(|(_, f)| !f.failed) {
            self.health.succeeded();
        }
        for (alias, f) in feedback {
            self.schedule.polled(&alias, f);
        }
        // A push reported while its image was being checked: checked again now, not at the
        // next interval (the check that ended may have listed the tags before the push).
        let pushed_meanwhile: Vec<String> = done
            .due
            .iter()
            .filter(|a| self.express.contains(*a))
            .cloned()
            .collect();
        self.schedule.due_now(&pushed_meanwhile);
        self.health.ready.store(true, Ordering::Relaxed);
    }

    /// The config file changed, or SIGHUP: a valid new config replaces the engine for the
    /// next cycles (a cycle in flight keeps the one it holds).
    async fn reload(&mut self, trigger: Trigger) {
        if trigger == Trigger::File {
            tokio::time::sleep(DEBOUNCE).await;
            while self.events.reload_rx.try_recv().is_ok() {}
        }
        let Some(config) = reload_config(
            &self.options,
            trigger,
            &mut self.source,
            &self.shared,
            &self.engine.config,
        )
        .await
        else {
            systemd::ready();
            return;
        };
        match Engine::new(Arc::new(config), &self.shared) {
            Ok(new) => {
                self.shared.metrics.reloaded(true);
                tracing::info!(file = %self.options.config_path.display(), images = new.config.images.len(), "config reloaded");
                let shared = &self.shared;
                self.schedule
                    .reconcile(&new.config, |alias| shared.status.checked(alias));
                planned(&self.schedule, &new.config, &self.shared, &self.health);
                self.waiters
                    .retain_known(|alias| new.config.images.contains_key(alias));
                self.express
                    .retain(|alias| new.config.images.contains_key(alias));
                self.pushed_tags
                    .retain(|alias, _| new.config.images.contains_key(alias));
                self.health
                    .images
                    .store(self.schedule.len(), Ordering::Relaxed);
                self.engine = Arc::new(new);
                self.config_tx.send_replace(self.engine.config.clone());
                self.shared.explained.retain(&self.engine.config);
                let now = crate::cluster::fingerprint(&self.engine.config);
                self.work_tx
                    .send_if_modified(|work| (now != *work).then(|| *work = now).is_some());
                let owned = owned_by(self.events.members.as_ref(), &self.engine);
                self.owned = take_over(&self.shared, self.owned.take(), owned);
                self.shared.forget_mirrors().await;
            }
            Err(e) => {
                self.shared.metrics.reloaded(false);
                tracing::error!(error = %e, "cannot apply the new config; keeping the old one");
            }
        }
        systemd::ready();
    }

    /// `image-updater poll` asked for an image now.
    fn poll_asked(&mut self, request: control::PollRequest) {
        match poll_refusal(&self.engine.config, &request) {
            Some(refused) => {
                let _ = request.reply.send(Err(refused));
            }
            None => {
                tracing::info!(image = %request.image, "checking now: `image-updater poll` asked");
                self.schedule.due_now(std::slice::from_ref(&request.image));
                self.express.insert(request.image.clone());
                self.waiters.push(request);
            }
        }
    }

    /// A registry reported a push: its images are due now, here or at their owners.
    fn pushed(&mut self, pushed: Vec<webhook::Pushed>) {
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        for (alias, tags) in webhook::matching(&self.engine.config, &pushed) {
            // In a cluster, the images of other replicas go to their owners.
            if !self.owned.as_ref().is_none_or(|o| o.contains(&alias)) {
                theirs.push(alias);
                continue;
            }
            if !tags.is_empty() {
                let known = self.pushed_tags.entry(alias.clone()).or_default();
                known.extend(tags);
                let over = known.len().saturating_sub(MAX_PUSHED_TAGS);
                known.drain(..over);
            }
            mine.push(alias);
        }
        if !mine.is_empty() {
            tracing::info!(images = ?mine, "checking now: a registry reported a push");
            self.schedule.due_now(&mine);
            self.express.extend(mine.iter().cloned());
        }
        if let (Some(h), false) = (self.shared.handover.get(), theirs.is_empty()) {
            tracing::info!(images = ?theirs, "a registry reported a push; passing it on to the images' owners");
            let session = self.shared.cluster.get().and_then(|s| s.borrow().clone());
            let h = h.clone();
            tokio::spawn(async move { crate::cluster::pokes::send(&h, session, &theirs).await });
        }
    }

    /// Another replica passed on a push for images this one owns, or changed their record.
    fn poked(&mut self, poked: Vec<String>) {
        let mine: Vec<String> = poked
            .into_iter()
            .filter(|a| self.owned.as_ref().is_some_and(|o| o.contains(a)))
            .collect();
        if mine.is_empty() {
            return;
        }
        // A poke may also say another replica changed the image's record (a pull request it
        // wrote): read it again before the check.
        if let Some(h) = self.shared.handover.get() {
            h.taken(mine.iter().cloned());
        }
        tracing::info!(images = ?mine, "checking now: another replica received a push for them, or changed their record");
        self.schedule.due_now(&mine);
        self.express.extend(mine.iter().cloned());
    }

    /// Asks each registry that is down, and not being polled, whether it is back.
    fn probe_down(&mut self) {
        for (lane, client) in self.engine.registries().down() {
            // A cycle of the lane running finds out for itself.
            let busy = self.lanes.keys().any(|l| l.registry == lane);
            if busy || !self.probing.insert(lane.to_string()) {
                continue;
            }
            let (client, lane, tx) = (client.clone(), lane.to_string(), self.probe_tx.clone());
            tokio::spawn(async move {
                // Jitter: replicas and daemons probing one registry spread out.
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..500))).await;
                let up = client.probe().await;
                let _ = tx.send((lane, up));
            });
        }
    }

    /// A probe's answer: a registry that is back has its failed images polled at once.
    fn probed(&mut self, lane: &str, up: bool) {
        self.probing.remove(lane);
        if !up {
            return;
        }
        let (engine, owned) = (&self.engine, &self.owned);
        let back = self.schedule.recovered(|alias| {
            lane_of(engine, alias) == lane && owned.as_ref().is_none_or(|o| o.contains(alias))
        });
        if back > 0 {
            tracing::info!(registry = %lane, images = back, "the registry answers again; polling the images that failed now");
        }
    }

    fn heartbeat(&self) {
        self.health.beat();
        memory::trim();
        // A replica in the cluster that owns no image makes progress by being there.
        if let (Some(m), Some(o)) = (&self.events.members, &self.owned)
            && o.is_empty()
            && m.borrow().live.contains(&m.borrow().me)
        {
            self.health.succeeded();
            self.health.ready.store(true, Ordering::Relaxed);
        }
    }

    /// The live replicas changed: this replica's share of the images and of each registry's
    /// rate follow.
    fn members_changed(&mut self) {
        let before = self.owned.clone();
        let now = owned_by(self.events.members.as_ref(), &self.engine);
        self.owned = take_over(&self.shared, self.owned.take(), now);
        // Taken over from a replica that left: polled in a lane of their own. (A replica that
        // owned nothing yet is starting, and has nothing to delay.)
        if let (Some(before), Some(now)) = (&before, &self.owned)
            && !before.is_empty()
        {
            self.adopting.extend(now.difference(before).cloned());
        }
        let owned = &self.owned;
        self.adopting
            .retain(|a| owned.as_ref().is_some_and(|o| o.contains(a)));
        let view = self
            .events
            .members
            .as_ref()
            .map(|m| m.borrow().clone())
            .unwrap_or_default();
        if self.settle_at.is_none() && view.live.contains(&view.me) {
            self.settle_at = Some(tokio::time::Instant::now() + JOIN_SETTLE);
        }
        let count = self.owned.as_ref().map_or(0, |o| o.len());
        let (live, foreign) = (view.live.len(), view.foreign.len());
        self.shared.metrics.owned_images(count, live, foreign);
        self.health.saw_foreign(foreign);
        // Each request waits for one slot per live replica: together they keep to each
        // registry's rate.
        let share = u32::try_from(live).unwrap_or(u32::MAX).max(1);
        self.shared.tuning.share.store(share, Ordering::Relaxed);
        let images = self.engine.config.images.len();
        tracing::info!(
            owned = count,
            of = images,
            members = live,
            "cluster: images owned by this replica"
        );
        if count == 0 && images > 0 {
            let why = if !view.live.contains(&view.me) {
                "it is outside the cluster until it holds a lease".to_string()
            } else {
                format!(
                    "the other {} live replicas of this config own them all",
                    live.saturating_sub(1)
                )
            };
            tracing::info!(images, members = ?view.live, foreign = view.foreign.len(), "cluster: this replica owns none of the images: {why}");
        }
    }

    /// Lets running cycles finish for up to [`SHUTDOWN_GRACE`], saves the state, stops the
    /// listeners, and gives up the cluster lease.
    pub(super) async fn stop(self) {
        systemd::stopping();
        if !self.lanes.is_empty() {
            tracing::info!(grace = ?SHUTDOWN_GRACE, cycles = self.lanes.len(), "shutting down: letting running cycles finish");
            let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
            for (lane, mut running) in self.lanes {
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
        self.shared.save();
        let tasks = self.tasks;
        let _ = tasks.stop_tx.send(true);
        let _ = tasks.server.await;
        if let Some(task) = tasks.webhook {
            let _ = task.await;
        }
        if let Some(task) = tasks.pokes {
            let _ = task.await;
        }
        // The lease is revoked on the way out: the others take this replica's images at once.
        if let Some(task) = tasks.cluster {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
        tracing::info!("stopped");
    }
}

/// The daemon's listeners (the operator's port: `/metrics`, `/healthz`, `/readyz` and
/// `image-updater poll`; with `[webhooks]`, the webhook port) and what they hand the loop.
struct Listeners {
    server: JoinHandle<()>,
    webhook: Option<JoinHandle<()>>,
    poll_rx: mpsc::Receiver<control::PollRequest>,
    push_rx: mpsc::Receiver<Vec<webhook::Pushed>>,
}

impl Listeners {
    /// Binds both ports; they stop when `stop` turns true.
    async fn start(
        options: &Options,
        config: &Config,
        shared: &Shared,
        health: &Arc<http::Health>,
        config_rx: watch::Receiver<Arc<Config>>,
        stop: watch::Receiver<bool>,
    ) -> Result<Listeners, String> {
        let listen = options.listen.unwrap_or(config.settings.listen);
        let listener = http::endpoints::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let (poll_tx, poll_rx) = mpsc::channel::<control::PollRequest>(16);
        let served = listener.local_addr().unwrap_or(listen);
        let control = control::ControlFile::create(&shared.state_dir, served).map_err(|e| {
            format!(
                "cannot write {}: {e}",
                control::ControlFile::path(&shared.state_dir).display()
            )
        })?;
        let ui = Arc::new(http::ui::Ui::new(
            config_rx,
            shared.clone(),
            control.clone(),
            poll_tx.clone(),
        ));
        let server = Arc::new(http::Server {
            health: health.clone(),
            metrics: shared.metrics.clone(),
            registry_metrics: shared.registry_metrics.clone(),
            control: Some((control, poll_tx)),
            ui: Some(ui),
        });
        // Registry push events, when [webhooks] is configured.
        let (push_tx, push_rx) = mpsc::channel::<Vec<webhook::Pushed>>(64);
        let webhook = start_webhooks(config, push_tx, stop.clone()).await?;
        // Served last, so that when /healthz answers, every listener is bound.
        let server = tokio::spawn(server.serve(listener, stop));
        if config.ui.is_some() {
            tracing::info!(%listen, "serving the status page at /, and /metrics, /healthz and /readyz");
        } else {
            tracing::info!(%listen, "serving /metrics, /healthz and /readyz");
        }
        Ok(Listeners {
            server,
            webhook,
            poll_rx,
            push_rx,
        })
    }
}

/// The webhook listener, when `[webhooks]` is configured and its secret reads.
async fn start_webhooks(
    config: &Config,
    push_tx: mpsc::Sender<Vec<webhook::Pushed>>,
    stop: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, String> {
    let (Some(w), Some(secret)) = (&config.webhooks, webhook::secret(config).await?) else {
        return Ok(None);
    };
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
    Ok(Some(tokio::spawn(webhook::serve(
        listener,
        tls,
        Arc::new(secret),
        push_tx,
        stop,
    ))))
}

/// The state dir (the command line's, or the config's), created private, and what is kept in
/// it opened.
fn open_state(options: &Options, config: &Config) -> Result<Shared, String> {
    let state_dir = options
        .state_dir
        .clone()
        .unwrap_or_else(|| config.settings.state_dir.clone());
    crate::private::create_dir(&state_dir)
        .map_err(|e| crate::private::state_dir_error(&state_dir, &e))?;
    Ok(Shared::open(state_dir))
}

/// Tells systemd the daemon is ready; the watchdog's interval when systemd asks for one, and
/// the timer that feeds it (hourly and unused without).
fn systemd_ready() -> (Option<Duration>, tokio::time::Interval) {
    systemd::check_socket();
    let watchdog = systemd::watchdog_interval();
    let tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    systemd::ready();
    (watchdog, tick)
}

/// SIGHUP, SIGTERM and SIGINT, in that order.
fn signals() -> Result<[tokio::signal::unix::Signal; 3], String> {
    let one = |kind| signal(kind).map_err(|e| e.to_string());
    Ok([
        one(SignalKind::hangup())?,
        one(SignalKind::terminate())?,
        one(SignalKind::interrupt())?,
    ])
}

/// With `[cluster]`: joins it, and gives the engine's shared state this replica's session,
/// records and member view. Returns the member view and the membership task.
fn join_cluster(
    config: &Config,
    shared: &mut Shared,
    health: &http::Health,
    work_tx: &watch::Sender<String>,
    stop_tx: &watch::Sender<bool>,
) -> (
    Option<watch::Receiver<crate::cluster::Members>>,
    Option<JoinHandle<()>>,
) {
    let Some(cluster) = &config.cluster else {
        return (None, None);
    };
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

/// What runs one cycle at a time: a registry's images, or the images of a registry this
/// replica has just taken over from another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Lane {
    /// The registry's name, as the budget plan names it.
    registry: String,
    taken_over: bool,
    /// Images a push was reported for: checked beside the registry's due polls, not after
    /// them. Their requests still go through the registry's budget and concurrency limit,
    /// and their writes through the repository's mirror one at a time, with a lease.
    express: bool,
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.registry)?;
        if self.taken_over {
            f.write_str(" (images taken over)")?;
        }
        if self.express {
            f.write_str(" (pushes)")?;
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
    (due, pushed): (Vec<String>, HashMap<String, Vec<crate::poll::PushedTag>>),
    done: mpsc::UnboundedSender<LaneDone>,
) -> Running {
    let (cycle_engine, cycle_due) = (engine.clone(), due.clone());
    let mut cycle = tokio::spawn(async move {
        let report = cycle_engine
            .cycle_after_pushes(&cycle_due, false, pushed)
            .await;
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
        if round.length > super::schedule::BATCH_WINDOW {
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
