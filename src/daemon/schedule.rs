//! When each image is polled next.
//!
//! Every image has its own interval, stretched when its registry's request budget cannot
//! meet the configured intervals ([`super::budget`]). After a poll the next one is due one interval later, with
//! ±10% jitter so images configured alike drift apart instead of hitting a registry together.
//! Repeated failures double the wait (up to 32 intervals, at most 6 hours), a registry whose
//! rate-limit budget runs low is polled at half the rate, and a registry that answered 429 is
//! not polled before it said to come back. A success brings the image back to its interval.

// Numbers here come from registries, webhook senders and clocks: no arithmetic that can
// overflow or panic; every operation is checked or saturating.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::budget::{LaneRound, Plan};
use crate::config::Config;

/// Images due within this window of each other are polled in one cycle, so that their changes
/// to one branch go into one commit.
pub const BATCH_WINDOW: Duration = Duration::from_secs(2);
const MAX_BACKOFF_STEPS: u32 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone)]
struct Entry {
    due: Instant,
    interval: Duration,
    failures: u32,
    /// A hash of the image's registry lane and repository: images that share one are polled
    /// together, so they share one tag list. (A hash rather than both names: two strings per
    /// image kept for a comparison; a collision only polls an image early.)
    repository: u64,
    /// A hash of the image's config, so a reload can tell an unchanged image from a changed
    /// one (a hash, not the text: 20,000 images' configs would be megabytes kept for this).
    fingerprint: u64,
    /// Before the first poll: how long the second one waits at least, the length of the
    /// lane's first round ([`super::budget::FirstRound`]). Zero once polled.
    settle: Duration,
}

/// What a poll of one image told the scheduler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Feedback {
    pub failed: bool,
    pub budget_low: bool,
    pub blocked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Schedule {
    entries: BTreeMap<String, Entry>,
    plan: Plan,
    /// The first polls the config applied last planned, per lane.
    first_round: BTreeMap<String, LaneRound>,
}

/// A 64-bit hash of `value`, for what the schedule compares but need not keep.
fn hash_of(value: impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

fn repository(lane: &str, path: &str) -> u64 {
    hash_of((lane, path))
}

fn fingerprint(config: &Config, alias: &str) -> u64 {
    hash_of(format!("{:?}", config.images[alias]))
}

impl Schedule {
    /// Every image due as soon as its registry's budget allows; `known` tells the images
    /// polled before from this state dir, whose first poll costs less.
    pub fn new(config: &Config, known: impl Fn(&str) -> bool) -> Schedule {
        let mut s = Schedule::default();
        s.reconcile(config, known);
        s
    }

    /// Applies a new config: unchanged images keep their timers (at the interval the new plan
    /// gives them), new and changed images are due as soon as the budget allows, removed images
    /// are dropped.
    pub fn reconcile(&mut self, config: &Config, known: impl Fn(&str) -> bool) {
        let now = Instant::now();
        let plan = Plan::new(config);
        let prints: BTreeMap<&str, u64> = config
            .images
            .keys()
            .map(|a| (a.as_str(), fingerprint(config, a)))
            .collect();
        let fresh = |alias: &str| {
            self.entries
                .get(alias)
                .is_none_or(|e| e.fingerprint != prints[alias])
        };
        let first = plan.first_polls(config, fresh, known);
        let mut entries = BTreeMap::new();
        for (alias, image) in &config.images {
            let fp = prints[alias.as_str()];
            let interval = plan.interval(image);
            let entry = match self.entries.remove(alias) {
                Some(old) if old.fingerprint == fp => Entry { interval, ..old },
                _ => {
                    let offset = first.offsets.get(alias).copied().unwrap_or_default();
                    let lane = super::budget::lane(image);
                    Entry {
                        due: later(
                            now,
                            offset.saturating_add(jitter(Duration::from_millis(500))),
                        ),
                        interval,
                        failures: 0,
                        settle: first.lanes.get(&lane).map(|l| l.length).unwrap_or_default(),
                        repository: repository(&lane, &image.reference.path),
                        fingerprint: fp,
                    }
                }
            };
            entries.insert(alias.clone(), entry);
        }
        self.entries = entries;
        self.plan = plan;
        self.first_round = first.lanes;
    }

    /// Per lane, the images whose first poll the last config applied planned, and how long
    /// those polls take at the budget.
    pub fn first_round(&self) -> &BTreeMap<String, LaneRound> {
        &self.first_round
    }

    /// The budget plan of the config applied last.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// How late `alias` is at `now`: how long ago it fell due.
    pub fn lag(&self, alias: &str, now: Instant) -> Duration {
        self.entries
            .get(alias)
            .map(|e| now.saturating_duration_since(e.due))
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The images `among` admits that are due by `now` plus the batch window, and with them
    /// the images of the same repository and interval, so that one tag list serves them all.
    pub fn due_among(&self, now: Instant, among: impl Fn(&str) -> bool) -> Vec<String> {
        let due: Vec<(&String, &Entry)> = self
            .entries
            .iter()
            .filter(|(a, e)| e.due <= later(now, BATCH_WINDOW) && among(a))
            .collect();
        let shared: std::collections::BTreeSet<(u64, Duration)> = due
            .iter()
            .map(|(_, e)| (e.repository, e.interval))
            .collect();
        self.entries
            .iter()
            .filter(|(a, e)| {
                (e.due <= later(now, BATCH_WINDOW) || shared.contains(&(e.repository, e.interval)))
                    && among(a)
            })
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// When the next image `among` admits is due; `None` when there is none.
    pub fn next_due_among(&self, among: impl Fn(&str) -> bool) -> Option<Instant> {
        self.entries
            .iter()
            .filter(|(a, _)| among(a))
            .map(|(_, e)| e.due)
            .min()
    }

    /// Makes `aliases` due now (a registry told us about a push).
    pub fn due_now(&mut self, aliases: &[String]) {
        let now = Instant::now();
        for alias in aliases {
            if let Some(e) = self.entries.get_mut(alias) {
                e.due = now;
            }
        }
    }

    /// Makes the images `among` admits that failed their last poll due within a second (their
    /// registry answers again after an outage): the backoff that kept them from a down
    /// registry must not outlast the outage. Returns how many.
    pub fn recovered(&mut self, among: impl Fn(&str) -> bool) -> usize {
        let now = Instant::now();
        let mut count = 0usize;
        for (alias, e) in &mut self.entries {
            if e.failures > 0 && e.due > now && among(alias) {
                e.due = later(now, jitter(Duration::from_secs(1)));
                count = count.saturating_add(1);
            }
        }
        count
    }

    /// Reschedules `alias` after a poll.
    pub fn polled(&mut self, alias: &str, feedback: Feedback) {
        let Some(e) = self.entries.get_mut(alias) else {
            return;
        };
        e.failures = if feedback.failed {
            e.failures.saturating_add(1)
        } else {
            0
        };
        let mut wait = e
            .interval
            .saturating_mul(2u32.saturating_pow(e.failures.min(MAX_BACKOFF_STEPS)));
        if e.failures > 0 {
            wait = wait.min(MAX_BACKOFF.max(e.interval));
        }
        if feedback.budget_low {
            wait = wait.saturating_mul(2);
        }
        wait = wait.max(std::mem::take(&mut e.settle));
        let now = Instant::now();
        let wait = wait.mul_f64(0.9).saturating_add(jitter(wait.mul_f64(0.2)));
        let mut due = later(now, wait);
        if let Some(until) = feedback.blocked_until {
            due = due.max(until);
        }
        e.due = due;
    }

    /// How long until `alias` is polled again, for logs and tests.
    pub fn wait_of(&self, alias: &str) -> Option<Duration> {
        self.entries
            .get(alias)
            .map(|e| e.due.saturating_duration_since(Instant::now()))
    }
}

/// `now + wait`, or as late as can be represented.
fn later(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait)
        .or_else(|| now.checked_add(MAX_BACKOFF))
        .unwrap_or(now)
}

/// A random duration in `[0, max)`.
fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return max;
    }
    Duration::from_nanos(fastrand::u64(
        0..max.as_nanos().min(u128::from(u64::MAX)) as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::parse(std::path::Path::new("t.toml"), text).unwrap()
    }

    const BASE: &str = r#"
[repositories.m]
url = "https://git.example.com/m.git"
[environments.prod]
branch = "deploy/prod"
[images.api]
image = "ghcr.io/org/api"
interval = "10m"
[[images.api.targets]]
kind = "kustomization"
file = "k.yaml"
[images.web]
image = "ghcr.io/org/web"
interval = "1h"
[[images.web.targets]]
kind = "kustomization"
file = "k.yaml"
"#;

    #[test]
    fn intervals_backoff_and_recovery() {
        let c = config(BASE);
        let mut s = Schedule::new(&c, |_| false);
        assert_eq!(s.due_among(Instant::now(), |_| true).len(), 2);
        s.polled("api", Feedback::default());
        let w = s.wait_of("api").unwrap();
        assert!(
            w >= Duration::from_secs(540) && w <= Duration::from_secs(660),
            "{w:?}"
        );
        s.polled(
            "api",
            Feedback {
                failed: true,
                ..Feedback::default()
            },
        );
        s.polled(
            "api",
            Feedback {
                failed: true,
                ..Feedback::default()
            },
        );
        let w = s.wait_of("api").unwrap();
        assert!(
            w >= Duration::from_secs(2160),
            "two failures: four intervals, {w:?}"
        );
        for _ in 0..10 {
            s.polled(
                "api",
                Feedback {
                    failed: true,
                    ..Feedback::default()
                },
            );
        }
        assert!(s.wait_of("api").unwrap() <= Duration::from_secs(6 * 3600 * 11 / 10));
        s.polled("api", Feedback::default());
        assert!(
            s.wait_of("api").unwrap() <= Duration::from_secs(660),
            "recovers at once"
        );
        s.polled(
            "api",
            Feedback {
                budget_low: true,
                ..Feedback::default()
            },
        );
        assert!(s.wait_of("api").unwrap() >= Duration::from_secs(1080));
        let until = Instant::now() + Duration::from_secs(5000);
        s.polled(
            "web",
            Feedback {
                blocked_until: Some(until),
                ..Feedback::default()
            },
        );
        assert!(s.wait_of("web").unwrap() >= Duration::from_secs(4999));
    }

    #[test]
    fn images_of_one_repository_are_polled_together() {
        let text = BASE
            .replace("ghcr.io/org/web", "ghcr.io/org/api")
            .replace("interval = \"1h\"", "interval = \"10m\"");
        let mut s = Schedule::new(&config(&text), |_| false);
        s.polled("api", Feedback::default());
        s.polled("web", Feedback::default());
        // Whichever falls due first brings the other along: one tag list for both.
        let soon = Instant::now() + Duration::from_secs(700);
        let due = s.due_among(soon, |_| true);
        assert_eq!(due, ["api", "web"]);
        let due = s.due_among(Instant::now(), |_| true);
        assert!(due.is_empty(), "{due:?}");
    }

    #[test]
    fn a_reload_keeps_timers_of_unchanged_images() {
        let mut s = Schedule::new(&config(BASE), |_| false);
        s.polled("api", Feedback::default());
        s.polled("web", Feedback::default());
        let changed = BASE.replace("ghcr.io/org/web", "ghcr.io/org/web2")
            + "[images.new]\nimage = \"ghcr.io/org/new\"\n[[images.new.targets]]\nkind = \"kustomization\"\nfile = \"k.yaml\"\n";
        s.reconcile(&config(&changed), |_| false);
        assert!(
            s.wait_of("api").unwrap() > Duration::from_secs(500),
            "api untouched"
        );
        assert!(
            s.wait_of("web").unwrap() < Duration::from_secs(1),
            "web changed: due now"
        );
        assert!(
            s.wait_of("new").unwrap() < Duration::from_secs(1),
            "new image: due now"
        );
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn a_first_round_longer_than_the_interval_holds_the_second_polls_back() {
        // 100 new images every 100 s on a registry of 1 request/s: each first poll costs 4
        // (tag list, HEAD, manifest, config) of the 0.8/s polls may use, so the round takes
        // 500 s. The first image's second poll waits for the round's end, not 100 s, or the
        // early images' second polls would compete with the round's last first polls.
        let mut text = "[registries.r]\nprefix = \"reg.example.com\"\nrate_limit = 1\n[repositories.m]\nurl = \"https://git.example.com/m.git\"\n[environments.prod]\nbranch = \"deploy/prod\"\n".to_string();
        for i in 0..100 {
            text.push_str(&format!(
                "[images.a{i}]\nimage = \"reg.example.com/org/a{i}\"\ninterval = \"100s\"\n[[images.a{i}.targets]]\nkind = \"kustomization\"\nfile = \"k.yaml\"\n"
            ));
        }
        let c = config(&text);
        let mut s = Schedule::new(&c, |_| false);
        let last = s.wait_of("a99").unwrap().max(s.wait_of("a50").unwrap());
        assert!(
            last > Duration::from_secs(200),
            "spread at 5 s each: {last:?}"
        );
        s.polled("a0", Feedback::default());
        let w = s.wait_of("a0").unwrap();
        assert!(w >= Duration::from_secs(449), "{w:?}");
        // After that, the interval: 100 s stretched 1.25x (1 request/s asked of 0.8).
        s.polled("a0", Feedback::default());
        let w = s.wait_of("a0").unwrap();
        assert!(w <= Duration::from_secs(138), "{w:?}");

        // Images polled before from this state dir cost one tag list: 125 s for the round,
        // no longer than the stretched interval, which rules.
        let mut s = Schedule::new(&c, |_| true);
        s.polled("a0", Feedback::default());
        let w = s.wait_of("a0").unwrap();
        assert!(w <= Duration::from_secs(138), "{w:?}");
    }
}
