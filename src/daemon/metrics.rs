//! The daemon's counters, and `/metrics` in the Prometheus text format.
//!
//! Registry request counters live with the registry clients ([`crate::registry::Metrics`]);
//! this module owns the rest and renders both. Labels are image aliases, environment,
//! registry, repository and branch names from the config: a bounded set.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::registry::Snapshot;

type ImageKey = (String, String);
type BranchKey = (String, String);

#[derive(Debug, Default, Clone)]
struct Counters {
    checked: BTreeMap<ImageKey, u64>,
    updated: BTreeMap<ImageKey, u64>,
    failed: BTreeMap<ImageKey, u64>,
    reverts: BTreeMap<ImageKey, u64>,
    last_success: BTreeMap<ImageKey, f64>,
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
}

/// Upper bounds of the poll lag histogram's buckets, in seconds.
const LAG_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
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

    pub fn checked(&self, image: &str, env: &str, ok: bool) {
        let key = (image.to_string(), env.to_string());
        self.with(|c| {
            *c.checked.entry(key.clone()).or_default() += 1;
            if ok {
                let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
                c.last_success.insert(key, now);
            } else {
                *c.failed.entry(key).or_default() += 1;
            }
        });
    }

    /// A write that failed for one image (its target could not be edited, or the push failed).
    pub fn write_failed(&self, image: &str, env: &str) {
        let key = (image.to_string(), env.to_string());
        self.with(|c| *c.failed.entry(key).or_default() += 1);
    }

    /// A person reverted what image-updater wrote; the value is now held.
    pub fn reverted(&self, image: &str, env: &str) {
        let key = (image.to_string(), env.to_string());
        self.with(|c| *c.reverts.entry(key).or_default() += 1);
    }

    pub fn updated(&self, image: &str, env: &str) {
        let key = (image.to_string(), env.to_string());
        self.with(|c| *c.updated.entry(key).or_default() += 1);
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

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self, registry: &Snapshot, images: usize) -> String {
        let c = self.inner.lock().expect("metrics lock").clone();
        let mut out = String::new();
        let images_label =
            |(i, e): &ImageKey| format!("image=\"{}\",environment=\"{}\"", esc(i), esc(e));
        family(
            &mut out,
            "image_updater_images",
            "gauge",
            "Images in the running config.",
        );
        let _ = writeln!(out, "image_updater_images {images}");
        counter_map(
            &mut out,
            "image_updater_images_checked_total",
            "Registry checks of an image in an environment.",
            &c.checked,
            images_label,
        );
        counter_map(
            &mut out,
            "image_updater_images_updated_total",
            "Updates of an image committed and pushed.",
            &c.updated,
            images_label,
        );
        counter_map(
            &mut out,
            "image_updater_images_failed_total",
            "Checks or writes of an image that failed.",
            &c.failed,
            images_label,
        );
        counter_map(
            &mut out,
            "image_updater_reverts_detected_total",
            "Values image-updater wrote that a person changed back (each then held).",
            &c.reverts,
            images_label,
        );
        family(
            &mut out,
            "image_updater_last_successful_check_timestamp_seconds",
            "gauge",
            "When an image was last checked successfully (Unix time).",
        );
        for (k, v) in &c.last_success {
            let _ = writeln!(
                out,
                "image_updater_last_successful_check_timestamp_seconds{{{}}} {v:.3}",
                images_label(k)
            );
        }
        family(
            &mut out,
            "image_updater_registry_requests_total",
            "counter",
            "Registry requests by registry, kind, method and status (0: no response).",
        );
        for ((registry, kind, status), n) in &registry.requests {
            let _ = writeln!(
                out,
                "image_updater_registry_requests_total{{registry=\"{}\",kind=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                esc(registry),
                kind.as_str(),
                kind.method()
            );
        }
        counter_map(
            &mut out,
            "image_updater_registry_rate_limited_total",
            "429 responses by registry.",
            &registry.rate_limited,
            |r: &String| format!("registry=\"{}\"", esc(r)),
        );
        family(
            &mut out,
            "image_updater_registry_rate_limit_wait_seconds_total",
            "counter",
            "Time spent waiting for a registry's rate limit.",
        );
        for (r, d) in &registry.rate_limit_wait {
            let _ = writeln!(
                out,
                "image_updater_registry_rate_limit_wait_seconds_total{{registry=\"{}\"}} {:.3}",
                esc(r),
                d.as_secs_f64()
            );
        }
        family(
            &mut out,
            "image_updater_metadata_cache_hits_total",
            "counter",
            "Digest metadata found in the cache.",
        );
        let _ = writeln!(
            out,
            "image_updater_metadata_cache_hits_total {}",
            registry.cache_hits
        );
        family(
            &mut out,
            "image_updater_metadata_cache_misses_total",
            "counter",
            "Digest metadata fetched from a registry.",
        );
        let _ = writeln!(
            out,
            "image_updater_metadata_cache_misses_total {}",
            registry.cache_misses
        );
        counter_map(
            &mut out,
            "image_updater_git_pushes_total",
            "Pushes by repository, branch and result.",
            &c.pushes,
            |(r, b, res): &(String, String, &str)| {
                format!(
                    "repository=\"{}\",branch=\"{}\",result=\"{res}\"",
                    esc(r),
                    esc(b)
                )
            },
        );
        counter_map(
            &mut out,
            "image_updater_git_push_retries_total",
            "Pushes that lost a race with another writer and were retried.",
            &c.push_retries,
            |(r, b): &BranchKey| format!("repository=\"{}\",branch=\"{}\"", esc(r), esc(b)),
        );
        family(
            &mut out,
            "image_updater_config_reloads_total",
            "counter",
            "Config reloads applied.",
        );
        let _ = writeln!(out, "image_updater_config_reloads_total {}", c.reloads);
        family(
            &mut out,
            "image_updater_config_reload_failures_total",
            "counter",
            "Config reloads refused because the new config is invalid.",
        );
        let _ = writeln!(
            out,
            "image_updater_config_reload_failures_total {}",
            c.reload_failures
        );
        family(
            &mut out,
            "image_updater_config_last_reload_successful",
            "gauge",
            "1 if the last reload was applied, 0 if it was refused.",
        );
        let _ = writeln!(
            out,
            "image_updater_config_last_reload_successful {}",
            u8::from(c.last_reload_ok)
        );
        family(
            &mut out,
            "image_updater_cycles_total",
            "counter",
            "Poll cycles run.",
        );
        let _ = writeln!(out, "image_updater_cycles_total {}", c.cycles);
        family(
            &mut out,
            "image_updater_cycle_seconds_total",
            "counter",
            "Time spent in poll cycles (divided by cycles_total: the mean cycle duration).",
        );
        let _ = writeln!(
            out,
            "image_updater_cycle_seconds_total {:.3}",
            c.cycle_seconds
        );
        counter_map(
            &mut out,
            "image_updater_cycle_failures_total",
            "Cycles that panicked or ran past their deadline, by registry.",
            &c.cycle_failures,
            |lane| format!("registry=\"{}\"", esc(lane)),
        );
        family(
            &mut out,
            "image_updater_poll_lag_seconds",
            "histogram",
            "How long after it fell due each poll started, by registry.",
        );
        for (registry, h) in &c.poll_lag {
            let r = esc(registry);
            for (bound, n) in LAG_BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "image_updater_poll_lag_seconds_bucket{{registry=\"{r}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "image_updater_poll_lag_seconds_bucket{{registry=\"{r}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "image_updater_poll_lag_seconds_sum{{registry=\"{r}\"}} {:.3}",
                h.sum
            );
            let _ = writeln!(
                out,
                "image_updater_poll_lag_seconds_count{{registry=\"{r}\"}} {}",
                h.count
            );
        }
        for (name, help, pick) in [
            (
                "image_updater_registry_poll_demand_requests_per_second",
                "Requests per second the configured intervals need, by registry.",
                0,
            ),
            (
                "image_updater_registry_poll_budget_requests_per_second",
                "Requests per second polls may use, by registry.",
                1,
            ),
            (
                "image_updater_registry_poll_interval_stretch_ratio",
                "How many times longer than configured the registry's intervals are (1: as configured).",
                2,
            ),
        ] {
            family(&mut out, name, "gauge", help);
            for (registry, (demand, budget, stretch)) in &c.plans {
                let value = [demand, budget, stretch][pick];
                let _ = writeln!(out, "{name}{{registry=\"{}\"}} {value:.3}", esc(registry));
            }
        }
        family(
            &mut out,
            "image_updater_poll_interval_seconds",
            "gauge",
            "Each image's poll interval as planned within its registry's budget.",
        );
        for (image, secs) in &c.intervals {
            let _ = writeln!(
                out,
                "image_updater_poll_interval_seconds{{image=\"{}\"}} {secs:.3}",
                esc(image)
            );
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter_map<K>(
    out: &mut String,
    name: &str,
    help: &str,
    map: &BTreeMap<K, u64>,
    labels: impl Fn(&K) -> String,
) {
    family(out, name, "counter", help);
    for (k, v) in map {
        let _ = writeln!(out, "{name}{{{}}} {v}", labels(k));
    }
}

/// A label value escaped as the text format requires.
fn esc(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_with_help_and_labels() {
        let m = DaemonMetrics::new();
        m.checked("api", "prod", true);
        m.checked("api", "prod", false);
        m.updated("api", "prod");
        m.pushed("manifests", "deploy/prod", true, 2);
        m.reloaded(false);
        let text = m.render(&Snapshot::default(), 3);
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
        assert_eq!(esc("a\"b"), "a\\\"b");
    }
}
