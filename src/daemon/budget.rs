//! The poll schedule planned from each registry's request budget.
//!
//! Each registry sustains some requests per second (its `rate_limit`, or what it publishes,
//! [`crate::config::limits`]); polls may use [`POLL_SHARE`] of it, the rest is left for
//! retries, new digests' manifests and tokens. A repository's steady poll costs one tag list,
//! shared by every image and environment that uses it, plus one HEAD per tag whose digest may
//! have moved (the tag a `digest` strategy follows, a `pin_digest` winner, `tags = "mutable"`).
//! When the configured intervals ask for more than the budget, the registry's images are
//! polled less often, and that is said once in the log, in `check`, in `status` and in the
//! metrics, rather than left to show as images silently falling behind. All alike when their
//! environments have the same `priority`; otherwise by priority (prod before dev): the
//! highest keeps its intervals while the budget allows, and a lower one is never stretched
//! more than [`MAX_SKEW`] times what all alike would have been, so none starves.
//!
//! The first polls after a start are spread over the time the budget needs for them, at what
//! each costs (a new image's first poll fetches its manifest and config too), instead of all
//! falling due at once; [`FirstRound`] says how long that takes.

// Numbers here come from the config: a rate or an interval may be tiny or huge.
#![deny(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::limits;
use crate::config::{Config, Image, Tags};
use crate::select::Strategy;

/// The part of a registry's request rate that polls are planned to use.
pub const POLL_SHARE: f64 = 0.8;

/// Under priorities, how many times the even stretch a lower priority may be stretched at
/// most: what it keeps of the budget whatever the higher ones need.
pub const MAX_SKEW: f64 = 4.0;

/// The images of one priority on one registry, and how much their intervals are stretched.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// The highest `priority` of the environments the images are deployed to.
    pub priority: u32,
    pub images: usize,
    /// Requests per second their configured intervals need.
    pub demand: f64,
    pub stretch: f64,
}

/// One registry's budget and what the config asks of it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryPlan {
    pub registry: String,
    /// Requests per second the registry sustains.
    pub rate: f64,
    /// Where `rate` comes from: `rate_limit` in the config, or the registry's published limit.
    pub source: String,
    pub images: usize,
    pub repositories: usize,
    /// Requests per second the configured intervals need.
    pub demand: f64,
    /// How many times longer than configured the intervals are at most (1 when the budget
    /// suffices).
    pub stretch: f64,
    /// By priority, highest first: one tier when every environment has the same.
    pub tiers: Vec<Tier>,
}

impl RegistryPlan {
    /// The requests per second polls may use.
    pub fn budget(&self) -> f64 {
        self.rate * POLL_SHARE
    }

    /// Whether the configured intervals cannot be met, by more than the warning can show (a
    /// stretch printed as 1.00x is none worth a warning).
    pub fn stretched(&self) -> bool {
        self.stretch >= 1.005
    }

    /// The warning, with its numbers, when the intervals are stretched.
    pub fn warning(&self) -> Option<String> {
        let how = if self.tiers.len() > 1 {
            let tiers: Vec<String> = self
                .tiers
                .iter()
                .map(|t| {
                    format!(
                        "priority {} ({} image(s)) {:.2}x",
                        t.priority, t.images, t.stretch
                    )
                })
                .collect();
            format!("intervals are stretched by priority: {}", tiers.join(", "))
        } else {
            format!("every interval is stretched {:.2}x", self.stretch)
        };
        self.stretched().then(|| {
            format!(
                "registry {}: {} image(s) on {} repositor{} need {:.1} requests/s at their intervals, and polls may use {:.1} ({:.0}% of {} requests/s, {}): {how}; set rate_limit if the registry allows more, or lengthen the intervals",
                self.registry,
                self.images,
                self.repositories,
                if self.repositories == 1 { "y" } else { "ies" },
                self.demand,
                self.budget(),
                POLL_SHARE * 100.0,
                self.rate,
                self.source,
            )
        })
    }

    /// The stretch of the images of `priority`.
    fn stretch_of(&self, priority: u32) -> f64 {
        self.tiers
            .iter()
            .find(|t| t.priority == priority)
            .map_or(self.stretch, |t| t.stretch)
    }
}

/// Shares `budget` among tiers (highest priority first, `(priority, images, demand)`): each
/// keeps its intervals while the budget allows, and what the lower ones need at
/// [`MAX_SKEW`] times the even stretch is kept back for them.
fn share(tiers: &[(u32, usize, f64)], budget: f64) -> Vec<Tier> {
    let total: f64 = tiers.iter().map(|t| t.2).sum();
    let even = (total / budget).max(1.0);
    let floor = |demand: f64| demand / (even * MAX_SKEW);
    let mut remaining = budget;
    let mut out = Vec::with_capacity(tiers.len());
    for (i, &(priority, images, demand)) in tiers.iter().enumerate() {
        let kept_back: f64 = tiers
            .iter()
            .skip(i.saturating_add(1))
            .map(|t| floor(t.2))
            .sum();
        let available = (remaining - kept_back).max(f64::MIN_POSITIVE);
        let stretch = (demand / available).max(1.0);
        let stretch = if stretch.is_finite() { stretch } else { 1.0 };
        remaining = (remaining - demand / stretch).max(0.0);
        out.push(Tier {
            priority,
            images,
            demand,
            stretch,
        });
    }
    out
}

/// The whole config's plan.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub registries: BTreeMap<String, RegistryPlan>,
    /// The images whose repository has a priority above 0 (none when no environment sets
    /// one): an image's lane and costs are read from its config when needed rather than kept
    /// for every image.
    priorities: BTreeMap<String, u32>,
}

/// The lane (registry) an image is polled in: its configured registry, or its host.
pub fn lane(image: &Image) -> String {
    image.registry_key()
}

/// HEADs one poll of `image` costs beyond the tag list: one per environment whose tag's
/// digest may have moved since the last poll.
fn heads(image: &Image) -> f64 {
    let moving = image
        .deployments
        .iter()
        .filter(|d| {
            matches!(d.policy.strategy, Strategy::Digest { .. })
                || d.safety.pin_digest
                || image.tags == Tags::Mutable
        })
        .count();
    // At most a few hundred environments: exact in an f64.
    moving as f64
}

/// Requests the first poll of `image` costs. An image polled before from this state dir
/// costs a steady poll: its tags' digests and their metadata are cached. A new one costs its
/// tag list and, per environment, the chosen tag's HEAD, manifest and config blob.
fn first_cost(image: &Image, known: bool) -> f64 {
    if known {
        return 1.0 + heads(image);
    }
    // At most a few hundred environments: exact in an f64.
    1.0 + 3.0 * image.deployments.len() as f64
}

/// The first polls after a start or a reload, planned by [`Plan::first_polls`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FirstRound {
    /// Per image: how long after now its first poll is due.
    pub offsets: BTreeMap<String, Duration>,
    /// Per lane: its images' first polls.
    pub lanes: BTreeMap<String, LaneRound>,
}

/// One lane's first polls.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LaneRound {
    pub images: usize,
    /// How long they take at the budget. An image's second poll waits for the end of its
    /// lane's round, so that the round's cold polls and the early images' second polls do not
    /// ask for more than the budget together.
    pub length: Duration,
}

/// The highest priority of the environments `image` is deployed to.
fn priority(image: &Image, config: &Config) -> u32 {
    image
        .deployments
        .iter()
        .filter_map(|d| config.environments.get(&d.environment))
        .map(|e| e.priority)
        .max()
        .unwrap_or_default()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(0.001)
}

impl Plan {
    pub fn new(config: &Config) -> Plan {
        let mut plan = Plan::default();
        // (lane, repository) -> (shortest interval, requests per poll, highest priority,
        // images): one tag list serves every image of a repository.
        let mut repositories: BTreeMap<(String, String), (Duration, f64, u32, usize)> =
            BTreeMap::new();
        for image in config.images.values() {
            let lane = lane(image);
            let entry = repositories
                .entry((lane, image.reference.path.clone()))
                .or_insert((image.interval, 1.0, 0, 0));
            entry.0 = entry.0.min(image.interval);
            entry.1 += heads(image);
            entry.2 = entry.2.max(priority(image, config));
            entry.3 = entry.3.saturating_add(1);
        }
        for image in config.images.values() {
            let key = (lane(image), image.reference.path.clone());
            let priority = repositories.get(&key).map_or(0, |r| r.2);
            if priority > 0 {
                plan.priorities.insert(image.alias.clone(), priority);
            }
        }
        // lane -> (priority -> (images, requests/s), the lane's repositories).
        type ByPriority = BTreeMap<u32, (usize, f64)>;
        let mut lanes: BTreeMap<String, (ByPriority, usize)> = BTreeMap::new();
        for ((lane, _), (interval, cost, priority, images)) in &repositories {
            let (tiers, repos) = lanes.entry(lane.clone()).or_default();
            let tier = tiers.entry(*priority).or_default();
            tier.0 = tier.0.saturating_add(*images);
            tier.1 += cost / secs(*interval);
            *repos = repos.saturating_add(1);
        }
        for (lane, (tiers, repos)) in lanes {
            let (rate, source) = match config.registries.get(&lane) {
                Some(r) if r.rate_limit_set => (r.rate_limit, "rate_limit".to_string()),
                Some(r) => (
                    r.rate_limit,
                    limits::default_rate(&r.prefix).source.to_string(),
                ),
                None => {
                    let known = limits::default_rate(&lane);
                    (known.per_second, known.source.to_string())
                }
            };
            let tiers: Vec<(u32, usize, f64)> = tiers
                .into_iter()
                .rev()
                .map(|(priority, (images, demand))| (priority, images, demand))
                .collect();
            let budget = (rate * POLL_SHARE).max(f64::MIN_POSITIVE);
            let tiers = share(&tiers, budget);
            let stretch = tiers.iter().map(|t| t.stretch).fold(1.0, f64::max);
            plan.registries.insert(
                lane.clone(),
                RegistryPlan {
                    registry: lane,
                    rate,
                    source,
                    images: tiers.iter().map(|t| t.images).sum(),
                    repositories: repos,
                    demand: tiers.iter().map(|t| t.demand).sum(),
                    stretch,
                    tiers,
                },
            );
        }
        plan
    }

    /// The priority `image` is polled at: the highest of its repository's environments.
    fn priority(&self, image: &Image) -> u32 {
        self.priorities
            .get(&image.alias)
            .copied()
            .unwrap_or_default()
    }

    /// How often `image` is polled under the plan.
    pub fn interval(&self, image: &Image) -> Duration {
        let priority = self.priority(image);
        let stretch = self
            .registries
            .get(&lane(image))
            .map_or(1.0, |r| r.stretch_of(priority));
        // At most a year: a stretch far past any use is still a number a timer takes.
        Duration::try_from_secs_f64(secs(image.interval) * stretch)
            .unwrap_or(Duration::MAX)
            .min(Duration::from_secs(365 * 24 * 3600))
    }

    /// When the first poll of each image `fresh` admits is due, from now: images of one
    /// registry follow each other as fast as its budget allows, the highest priority first,
    /// each spaced by what its first poll costs ([`first_cost`]; `known` tells the images
    /// polled before from this state dir, whose tags and digests are cached). No first poll
    /// is put off to one interval: that would bunch every later one at the interval's end.
    pub fn first_polls(
        &self,
        config: &Config,
        fresh: impl Fn(&str) -> bool,
        known: impl Fn(&str) -> bool,
    ) -> FirstRound {
        let mut round = FirstRound::default();
        // Per lane: when its next first poll is due, in seconds from now.
        let mut at_lane: BTreeMap<String, f64> = BTreeMap::new();
        let mut images: Vec<&Image> = config.images.values().filter(|i| fresh(&i.alias)).collect();
        images.sort_by_key(|i| std::cmp::Reverse(self.priority(i)));
        for image in images {
            let lane = lane(image);
            let budget = self
                .registries
                .get(&lane)
                .map_or(f64::INFINITY, RegistryPlan::budget);
            let at = at_lane.entry(lane.clone()).or_default();
            round.offsets.insert(
                image.alias.clone(),
                Duration::try_from_secs_f64(*at).unwrap_or(Duration::MAX),
            );
            *at += first_cost(image, known(&image.alias)) / budget.max(f64::MIN_POSITIVE);
            let lane_round = round.lanes.entry(lane).or_default();
            lane_round.images = lane_round.images.saturating_add(1);
            lane_round.length = Duration::try_from_secs_f64(*at).unwrap_or(Duration::MAX);
        }
        round
    }

    /// The warnings of every stretched registry.
    pub fn warnings(&self) -> Vec<String> {
        self.registries
            .values()
            .filter_map(RegistryPlan::warning)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(images: usize, rate: Option<&str>, extra: &str) -> Config {
        let mut text = format!(
            "[registries.r]\nprefix = \"reg.example.com\"\n{}\n[repositories.m]\nurl = \"https://git.example.com/m.git\"\n[environments.dev]\nbranch = \"deploy/dev\"\n[environments.prod]\nbranch = \"deploy/prod\"\n",
            rate.map(|r| format!("rate_limit = {r}"))
                .unwrap_or_default()
        );
        for i in 0..images {
            text.push_str(&format!(
                "[images.a{i}]\nimage = \"reg.example.com/org/a{i}\"\ninterval = \"100s\"\n{extra}\n[[images.a{i}.targets]]\nkind = \"kustomization\"\nfile = \"k.yaml\"\n"
            ));
        }
        crate::config::parse(std::path::Path::new("t.toml"), &text).unwrap()
    }

    #[test]
    fn within_the_budget_nothing_is_stretched() {
        // 100 repositories every 100 s: 1 request/s, against 80% of 50 (no published limit).
        let c = config(100, None, "");
        let plan = Plan::new(&c);
        let r = &plan.registries["r"];
        assert_eq!((r.rate, r.images, r.repositories), (50.0, 100, 100));
        assert!((r.demand - 1.0).abs() < 1e-9, "{}", r.demand);
        assert_eq!(r.stretch, 1.0);
        assert!(plan.warnings().is_empty());
        assert_eq!(plan.interval(&c.images["a0"]), Duration::from_secs(100));
    }

    /// A demand a hair over the budget stretches by less than the warning prints (1.00x):
    /// no warning.
    #[test]
    fn a_stretch_that_prints_as_one_is_no_warning() {
        // 4,001 repositories every 100 s: 40.01 requests/s against 40.
        let c = config(4001, None, "");
        let plan = Plan::new(&c);
        let r = &plan.registries["r"];
        assert!(r.stretch > 1.0 && r.stretch < 1.005, "{}", r.stretch);
        assert!(plan.warnings().is_empty(), "{:?}", plan.warnings());
    }

    #[test]
    fn past_the_budget_every_interval_stretches_alike() {
        // 100 repositories every 100 s with a digest followed in both environments:
        // (1 tag list + 2 HEADs) x 100 / 100 s = 3 requests/s, against 80% of 1.
        let c = config(100, Some("1"), "strategy = \"digest\"\ntag = \"latest\"");
        let plan = Plan::new(&c);
        let r = &plan.registries["r"];
        assert!((r.demand - 3.0).abs() < 1e-9, "{}", r.demand);
        assert!((r.stretch - 3.75).abs() < 1e-9, "{}", r.stretch);
        assert_eq!(plan.interval(&c.images["a7"]), Duration::from_secs(375));
        let warning = r.warning().unwrap();
        assert!(warning.contains("need 3.0 requests/s"), "{warning}");
        assert!(warning.contains("stretched 3.75x"), "{warning}");
        // First polls follow each other at the budget. Images polled before cost a steady
        // poll, 3 requests at 0.8/s; new ones the tag list and, in each of the two
        // environments, a HEAD, a manifest and a config: 7 requests. Nothing is bunched at
        // the end of an interval: the round lasts what the budget needs.
        let known = plan.first_polls(&c, |_| true, |_| true);
        assert_eq!(known.offsets["a0"], Duration::ZERO);
        assert_eq!(known.offsets["a1"], Duration::from_secs_f64(3.75));
        assert_eq!(known.lanes["r"].length, Duration::from_secs_f64(375.0));
        assert_eq!(known.lanes["r"].images, 100);
        let new = plan.first_polls(&c, |_| true, |_| false);
        assert_eq!(new.offsets["a1"], Duration::from_secs_f64(8.75));
        assert_eq!(new.lanes["r"].length, Duration::from_secs_f64(875.0));
        let mut offsets: Vec<Duration> = new.offsets.values().copied().collect();
        offsets.sort();
        assert_eq!(offsets.last(), Some(&Duration::from_secs_f64(866.25)));
    }

    #[test]
    fn past_the_budget_a_higher_priority_keeps_its_intervals() {
        // 10 prod images and 90 dev images, every 100 s, 1 request each: 1 request/s against
        // 80% of 0.5. All alike would stretch 2.5x; prod (priority 10) keeps its intervals and
        // dev takes what is left.
        let mut text = "[registries.r]\nprefix = \"reg.example.com\"\nrate_limit = 0.5\n[repositories.m]\nurl = \"https://git.example.com/m.git\"\n[environments.dev]\nbranch = \"deploy/dev\"\n[environments.prod]\nbranch = \"deploy/prod\"\npriority = 10\n".to_string();
        for i in 0..100 {
            let env = if i < 10 { "prod" } else { "dev" };
            text.push_str(&format!(
                "[images.a{i}]\nimage = \"reg.example.com/org/a{i}\"\ninterval = \"100s\"\nenvironments = [\"{env}\"]\n[[images.a{i}.targets]]\nkind = \"kustomization\"\nfile = \"k.yaml\"\n"
            ));
        }
        let c = crate::config::parse(std::path::Path::new("t.toml"), &text).unwrap();
        let plan = Plan::new(&c);
        let r = &plan.registries["r"];
        let tiers: Vec<(u32, usize)> = r.tiers.iter().map(|t| (t.priority, t.images)).collect();
        assert_eq!(tiers, [(10, 10), (0, 90)]);
        assert_eq!(r.tiers[0].stretch, 1.0);
        // Dev: 0.9 requests/s in the 0.3 left.
        assert!((r.tiers[1].stretch - 3.0).abs() < 1e-9, "{:?}", r.tiers);
        assert_eq!(plan.interval(&c.images["a3"]), Duration::from_secs(100));
        assert_eq!(plan.interval(&c.images["a50"]), Duration::from_secs(300));
        let warning = r.warning().unwrap();
        assert!(
            warning.contains("stretched by priority: priority 10 (10 image(s)) 1.00x, priority 0 (90 image(s)) 3.00x"),
            "{warning}"
        );
        // The first polls go to prod first.
        let first = plan.first_polls(&c, |_| true, |_| false).offsets;
        assert!(first["a9"] < first["a10"], "{first:?}");

        // When prod alone needs more than the budget, dev still keeps what MAX_SKEW times the
        // even stretch needs, and nothing stretches without bound.
        let mut c = c;
        for image in c.images.values_mut().take(10) {
            image.interval = Duration::from_secs(1);
        }
        let plan = Plan::new(&c);
        let r = &plan.registries["r"];
        let even = r.demand / r.budget();
        assert!(
            r.tiers[1].stretch <= even * MAX_SKEW + 1e-9,
            "{:?}",
            r.tiers
        );
        let used: f64 = r.tiers.iter().map(|t| t.demand / t.stretch).sum();
        assert!((used - r.budget()).abs() < 1e-9, "{used} of {}", r.budget());
    }

    #[test]
    fn images_of_one_repository_share_its_tag_list() {
        let mut c = config(2, Some("1"), "");
        c.images.get_mut("a1").unwrap().reference = c.images["a0"].reference.clone();
        let plan = Plan::new(&c);
        assert_eq!(plan.registries["r"].repositories, 1);
        assert!((plan.registries["r"].demand - 0.01).abs() < 1e-9);
    }
}
