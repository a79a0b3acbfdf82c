//! The daemon's counters, and `/metrics`.
//!
//! Registry request counters live with the registry clients ([`crate::registry::Metrics`]);
//! this module owns the rest, and [`exposition`] renders both. Labels are image aliases,
//! environment, registry, repository and branch names from the config, request kinds and
//! HTTP statuses: a bounded set, never a tag or a digest.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::registry::Snapshot;
use crate::state::by_image::{self, ByImage};

mod exposition;

pub use exposition::Format;

type BranchKey = (String, String);

/// The series of one image in one environment.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ImageSeries {
    checked: u64,
    updated: u64,
    failed: u64,
    reverts: u64,
    /// Unix time of the last successful check.
    last_success: Option<f64>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// One entry per image and environment for all its series.
    images: ByImage<ImageSeries>,
    /// (repository, branch, result) -> pushes.
    pushes: BTreeMap<(String, String, &'static str), u64>,
    push_retries: BTreeMap<BranchKey, u64>,
    reloads: u64,
    reload_failures: u64,
    last_reload_ok: bool,
    cycles: u64,
    cycle_seconds: f64,
    /// Cycles that panicked or were abandoned, by registry lane.
    cycle_failures: BTreeMap<String, u64>,
    /// How late polls started, by registry: bucket counts, sum and count.
    poll_lag: BTreeMap<String, Histogram>,
    /// By registry: (requests/s the intervals need, requests/s polls may use, stretch).
    plans: BTreeMap<String, (f64, f64, f64)>,
    /// Each image's interval as planned.
    intervals: BTreeMap<String, f64>,
    /// In a cluster: the images this replica owns, and the live replicas it sees.
    cluster: Option<(u64, u64, u64)>,
    /// Chart repositories' index requests, by (repository url, status; 0: no answer).
    chart_requests: BTreeMap<(String, u16), u64>,
}

/// Upper bounds of the poll lag histogram's buckets, in seconds.
const LAG_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

#[derive(Debug, Default, Clone)]
pub(crate) struct Histogram {
    /// Observations at or below each bound of [`LAG_BUCKETS`].
    buckets: [u64; LAG_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        for (bound, n) in LAG_BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if value <= *bound {
                *n += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }
}

/// Shared by the scheduler, the engine and the HTTP server; survives config reloads.
#[derive(Debug, Default)]
pub struct DaemonMetrics {
    inner: Mutex<Counters>,
}

impl DaemonMetrics {
    pub fn new() -> DaemonMetrics {
        let m = DaemonMetrics::default();
        m.inner.lock().expect("metrics lock").last_reload_ok = true;
        m
    }

    fn with(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.inner.lock().expect("metrics lock"));
    }

    /// The series of `image` in `env`, made on first use.
    fn image(&self, image: &str, env: &str, f: impl FnOnce(&mut ImageSeries)) {
        self.with(|c| f(by_image::entry(&mut c.images, image, env)));
    }

    /// In a cluster: how many images this replica owns among `members` live replicas, and how
    /// many member keys it does not divide work with (`foreign`).
    pub fn owned_images(&self, owned: usize, members: usize, foreign: usize) {
        self.with(|c| c.cluster = Some((owned as u64, members as u64, foreign as u64)));
    }

    pub fn checked(&self, image: &str, env: &str, ok: bool) {
        self.image(image, env, |s| {
            s.checked += 1;
            if ok {
                s.last_success = Some(jiff::Timestamp::now().as_millisecond() as f64 / 1000.0);
            } else {
                s.failed += 1;
            }
        });
    }

    /// A write that failed for one image (its target could not be edited, or the push failed).
    pub fn write_failed(&self, image: &str, env: &str) {
        self.image(image, env, |s| s.failed += 1);
    }

    /// A person reverted what image-updater wrote; the value is now held.
    pub fn reverted(&self, image: &str, env: &str) {
        self.image(image, env, |s| s.reverts += 1);
    }

    pub fn updated(&self, image: &str, env: &str) {
        self.image(image, env, |s| s.updated += 1);
    }

    pub fn pushed(&self, repository: &str, branch: &str, ok: bool, retries: u32) {
        self.with(|c| {
            let result = if ok { "success" } else { "failure" };
            *c.pushes
                .entry((repository.to_string(), branch.to_string(), result))
                .or_default() += 1;
            if retries > 0 {
                *c.push_retries
                    .entry((repository.to_string(), branch.to_string()))
                    .or_default() += u64::from(retries);
            }
        });
    }

    pub fn reloaded(&self, ok: bool) {
        self.with(|c| {
            if ok {
                c.reloads += 1;
            } else {
                c.reload_failures += 1;
            }
            c.last_reload_ok = ok;
        });
    }

    pub fn cycle(&self, took: std::time::Duration) {
        self.with(|c| {
            c.cycles += 1;
            c.cycle_seconds += took.as_secs_f64();
        });
    }

    /// A lane's cycle panicked or ran past its deadline.
    /// `n` requests for a chart repository's index answered `status` (0: no answer).
    pub fn chart_requests(&self, repository: &str, status: u16, n: u64) {
        self.with(|c| {
            let count = c
                .chart_requests
                .entry((repository.to_string(), status))
                .or_default();
            *count = count.saturating_add(n);
        });
    }

    pub fn cycle_failed(&self, lane: &str) {
        self.with(|c| *c.cycle_failures.entry(lane.to_string()).or_default() += 1);
    }

    /// A poll started `lag` after it fell due.
    pub fn poll_lag(&self, registry: &str, lag: std::time::Duration) {
        self.with(|c| {
            c.poll_lag
                .entry(registry.to_string())
                .or_default()
                .observe(lag.as_secs_f64())
        });
    }

    /// The budget plan of the running config.
    pub fn planned(&self, plan: &super::budget::Plan, config: &crate::config::Config) {
        self.with(|c| {
            c.plans = plan
                .registries
                .iter()
                .map(|(r, p)| (r.clone(), (p.demand, p.budget(), p.stretch)))
                .collect();
            c.intervals = config
                .images
                .values()
                .map(|i| (i.alias.clone(), plan.interval(i).as_secs_f64()))
                .collect();
        });
    }

    pub fn cycles(&self) -> u64 {
        self.inner.lock().expect("metrics lock").cycles
    }

    /// Everything, in the format the scraper asked for (see [`exposition`]); `registry` is
    /// a snapshot taken for this scrape, so it is handed over rather than copied again. The
    /// daemon's counters are encoded under their lock, not copied: a copy at 20,000 images
    /// is tens of thousands of small allocations per scrape.
    pub fn render(self: &Arc<Self>, registry: Snapshot, images: usize, format: Format) -> String {
        exposition::render(self.clone(), registry, images, format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_with_help_and_labels() {
        let m = Arc::new(DaemonMetrics::new());
        m.checked("api", "prod", true);
        m.checked("api", "prod", false);
        m.updated("api", "prod");
        m.pushed("manifests", "deploy/prod", true, 2);
        m.reloaded(false);
        for envs in m.inner.lock().unwrap().images.values() {
            assert_eq!(envs.capacity(), envs.len());
        }
        let text = m.render(Snapshot::default(), 3, Format::Classic);
        assert!(
            text.contains(
                "image_updater_images_checked_total{image=\"api\",environment=\"prod\"} 2"
            )
        );
        assert!(
            text.contains(
                "image_updater_images_failed_total{image=\"api\",environment=\"prod\"} 1"
            )
        );
        assert!(text.contains("image_updater_git_push_retries_total{repository=\"manifests\",branch=\"deploy/prod\"} 2"));
        assert!(text.contains("image_updater_config_reload_failures_total 1"));
        assert!(text.contains("image_updater_config_last_reload_successful 0"));
        assert!(text.contains("# TYPE image_updater_images_updated_total counter"));
    }
}
