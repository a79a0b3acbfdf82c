//! `/metrics` encoded by `prometheus-client`, in OpenMetrics 1.0 or in the classic Prometheus
//! text format (0.0.4), whichever the scraper's `Accept` header prefers.
//!
//! The counters stay in the daemon's own compact maps (one entry per image and environment,
//! no per-series objects); at each scrape a collector hands them to prometheus-client's
//! encoder, which owns the format: names (`_total` on counters, unit suffixes), escaping,
//! histogram buckets. The classic format differs from OpenMetrics in three ways that matter
//! here, and [`classic`] makes them: a counter family is named with its `_total`, and there
//! are no `# UNIT` or `# EOF` lines.

use std::fmt::Error;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
    NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use std::sync::Arc;

use super::{Counters, DaemonMetrics, ImageSeries, LAG_BUCKETS};
use crate::registry::Snapshot;

/// The exposition format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
    /// `text/plain; version=0.0.4`
    Classic,
}

impl Format {
    /// OpenMetrics when the `Accept` header lists it (Prometheus asks for it first), else the
    /// classic text format every scraper reads.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Classic,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// One scrape's values, handed to the encoder.
#[derive(Debug)]
struct Scrape {
    metrics: Arc<DaemonMetrics>,
    registry: Snapshot,
    images: usize,
}

pub(super) fn render(
    metrics: Arc<DaemonMetrics>,
    registry: Snapshot,
    images: usize,
    format: Format,
) -> String {
    let mut families = Registry::default();
    families.register_collector(Box::new(Scrape {
        metrics,
        registry,
        images,
    }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &families)
        .expect("encoding into a String does not fail");
    match format {
        Format::OpenMetrics => out,
        Format::Classic => classic(&out),
    }
}

/// A family of samples of one metric type.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, unit): (&str, &str, Option<&Unit>),
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> Result<(), Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, metric_type)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A family of counters: `name` gets `_total` (and the unit before it) from the encoder.
fn counters<L: EncodeLabelSet, N: EncodeCounterValue + std::fmt::Debug>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: impl IntoIterator<Item = (L, N)>,
) -> Result<(), Error> {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
    family(encoder, (name, help, unit), MetricType::Counter, samples)
}

/// A family of gauges.
fn gauges<L: EncodeLabelSet, N: EncodeGaugeValue + std::fmt::Debug>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: impl IntoIterator<Item = (L, N)>,
) -> Result<(), Error> {
    let samples = samples.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
    family(encoder, (name, help, unit), MetricType::Gauge, samples)
}

/// A counter with no labels.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: impl EncodeCounterValue + std::fmt::Debug,
) -> Result<(), Error> {
    let family = encoder.encode_descriptor(name, help, unit, MetricType::Counter)?;
    ConstCounter::new(value).encode(family)
}

/// A gauge with no labels.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), Error> {
    let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(family)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), Error> {
        let c = &*self.metrics.inner.lock().expect("metrics lock");
        images(&mut e, c, self.images)?;
        registries(&mut e, &self.registry)?;
        chart_repositories(&mut e, c)?;
        writes_and_cycles(&mut e, c)?;
        poll_lag(&mut e, c)?;
        plans(&mut e, c)
    }
}

const SECONDS: Option<&Unit> = Some(&Unit::Seconds);

/// The images: how many, this replica's share in a cluster, and each image's series.
fn images(e: &mut DescriptorEncoder, c: &Counters, count: usize) -> Result<(), Error> {
    // Every image's series, with the labels borrowed from the map.
    let series = || {
        c.images.iter().flat_map(|(image, envs)| {
            envs.iter()
                .map(move |(env, s)| ([("image", &**image), ("environment", &**env)], *s))
        })
    };
    // The series of one kind that have counted something: a counter appears with its
    // first event, as it always has.
    let counted = |value: fn(&ImageSeries) -> u64| {
        series()
            .map(move |(labels, s)| (labels, value(&s)))
            .filter(|(_, n)| *n > 0)
    };
    gauge(
        e,
        "image_updater_images",
        "Images in the running config.",
        count as u64,
    )?;
    if let Some((owned, members, foreign)) = c.cluster {
        gauge(
            e,
            "image_updater_cluster_owned_images",
            "Images this replica polls and writes, of those in the config ([cluster]).",
            owned,
        )?;
        gauge(
            e,
            "image_updater_cluster_members",
            "Live replicas this replica sees, itself included; 0 without an etcd lease.",
            members,
        )?;
        gauge(
            e,
            "image_updater_cluster_foreign_members",
            "Member keys this replica does not divide work with: without a lease, not a replica's, or a replica of a config with other images (`cluster status` says which).",
            foreign,
        )?;
    }
    counters(
        e,
        "image_updater_images_checked",
        "Registry checks of an image in an environment.",
        None,
        counted(|s| s.checked),
    )?;
    counters(
        e,
        "image_updater_images_updated",
        "Updates of an image committed and pushed.",
        None,
        counted(|s| s.updated),
    )?;
    counters(
        e,
        "image_updater_images_failed",
        "Checks or writes of an image that failed.",
        None,
        counted(|s| s.failed),
    )?;
    counters(
        e,
        "image_updater_reverts_detected",
        "Values image-updater wrote that a person changed back (each then held).",
        None,
        counted(|s| s.reverts),
    )?;
    gauges(
        e,
        "image_updater_last_successful_check_timestamp",
        "When an image was last checked successfully (Unix time).",
        SECONDS,
        series().filter_map(|(labels, s)| Some((labels, s.last_success?))),
    )?;
    Ok(())
}

/// The registries' requests, rate limits and the metadata cache, and the forges' rate limits.
fn registries(e: &mut DescriptorEncoder, r: &Snapshot) -> Result<(), Error> {
    counters(
        e,
        "image_updater_registry_requests",
        "Registry requests by registry, kind, method and status (0: no response).",
        None,
        r.requests.iter().map(|((registry, kind, status), n)| {
            (
                [
                    ("registry", registry.clone()),
                    ("kind", kind.as_str().to_string()),
                    ("method", kind.method().to_string()),
                    ("status", status.to_string()),
                ],
                *n,
            )
        }),
    )?;
    counters(
        e,
        "image_updater_registry_rate_limited",
        "429 responses by registry.",
        None,
        r.rate_limited
            .iter()
            .map(|(k, n)| ([("registry", k.as_str())], *n)),
    )?;
    let forges = crate::forge::http::rate_limited();
    counters(
        e,
        "image_updater_forge_rate_limited",
        "Rate-limit answers (429, GitHub's secondary-limit 403) by forge; each pauses requests to it for the time asked.",
        None,
        forges.iter().map(|(k, n)| ([("forge", k.as_str())], *n)),
    )?;
    counters(
        e,
        "image_updater_registry_rate_limit_wait",
        "Time spent waiting for a registry's rate limit.",
        SECONDS,
        r.rate_limit_wait
            .iter()
            .map(|(k, d)| ([("registry", k.as_str())], d.as_secs_f64())),
    )?;
    counter(
        e,
        "image_updater_metadata_cache_hits",
        "Digest metadata found in the cache.",
        None,
        r.cache_hits,
    )?;
    counter(
        e,
        "image_updater_metadata_cache_misses",
        "Digest metadata fetched from a registry.",
        None,
        r.cache_misses,
    )?;
    Ok(())
}

/// Chart repositories' index requests: a steady poll of an unchanged index is a 304.
fn chart_repositories(e: &mut DescriptorEncoder, c: &Counters) -> Result<(), Error> {
    counters(
        e,
        "image_updater_chart_repository_requests",
        "Chart repository index requests by repository and status (304: unchanged; 0: no response).",
        None,
        c.chart_requests.iter().map(|((repository, status), n)| {
            (
                [
                    ("repository", repository.clone()),
                    ("status", status.to_string()),
                ],
                *n,
            )
        }),
    )
}

/// Pushes, reloads and cycles.
fn writes_and_cycles(e: &mut DescriptorEncoder, c: &Counters) -> Result<(), Error> {
    counters(
        e,
        "image_updater_git_pushes",
        "Pushes by repository, branch and result.",
        None,
        c.pushes.iter().map(|((repository, branch, result), n)| {
            (
                [
                    ("repository", repository.as_str()),
                    ("branch", branch.as_str()),
                    ("result", result),
                ],
                *n,
            )
        }),
    )?;
    counters(
        e,
        "image_updater_git_push_retries",
        "Pushes that lost a race with another writer and were retried.",
        None,
        c.push_retries.iter().map(|((repository, branch), n)| {
            (
                [
                    ("repository", repository.as_str()),
                    ("branch", branch.as_str()),
                ],
                *n,
            )
        }),
    )?;
    counter(
        e,
        "image_updater_config_reloads",
        "Config reloads applied.",
        None,
        c.reloads,
    )?;
    counter(
        e,
        "image_updater_config_reload_failures",
        "Config reloads refused because the new config is invalid.",
        None,
        c.reload_failures,
    )?;
    gauge(
        e,
        "image_updater_config_last_reload_successful",
        "1 if the last reload was applied, 0 if it was refused.",
        u64::from(c.last_reload_ok),
    )?;
    counter(
        e,
        "image_updater_cycles",
        "Poll cycles run.",
        None,
        c.cycles,
    )?;
    counter(
        e,
        "image_updater_cycle",
        "Time spent in poll cycles (divided by cycles_total: the mean cycle duration).",
        SECONDS,
        c.cycle_seconds,
    )?;
    counters(
        e,
        "image_updater_cycle_failures",
        "Cycles that panicked or ran past their deadline, by registry.",
        None,
        c.cycle_failures
            .iter()
            .map(|(k, n)| ([("registry", k.as_str())], *n)),
    )?;
    Ok(())
}

/// How late each poll started, by registry, as a histogram.
fn poll_lag(e: &mut DescriptorEncoder, c: &Counters) -> Result<(), Error> {
    {
        let mut family = e.encode_descriptor(
            "image_updater_poll_lag",
            "How long after it fell due each poll started, by registry.",
            SECONDS,
            MetricType::Histogram,
        )?;
        for (registry, h) in &c.poll_lag {
            // Ours are cumulative; the encoder takes each bucket's own count.
            let mut below = 0;
            let mut buckets: Vec<(f64, u64)> = LAG_BUCKETS
                .iter()
                .zip(h.buckets)
                .map(|(bound, cumulative)| {
                    let own = cumulative.saturating_sub(below);
                    below = cumulative;
                    (*bound, own)
                })
                .collect();
            buckets.push((f64::INFINITY, h.count.saturating_sub(below)));
            family
                .encode_family(&[("registry", registry.as_str())])?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
        }
    }
    Ok(())
}

/// Each registry's budget plan and each image's planned interval.
fn plans(e: &mut DescriptorEncoder, c: &Counters) -> Result<(), Error> {
    gauges(
        e,
        "image_updater_registry_poll_demand_requests_per_second",
        "Requests per second the configured intervals need, by registry.",
        None,
        c.plans
            .iter()
            .map(|(k, p)| ([("registry", k.as_str())], p.0)),
    )?;
    gauges(
        e,
        "image_updater_registry_poll_budget_requests_per_second",
        "Requests per second polls may use, by registry.",
        None,
        c.plans
            .iter()
            .map(|(k, p)| ([("registry", k.as_str())], p.1)),
    )?;
    gauges(
        e,
        "image_updater_registry_poll_interval_stretch_ratio",
        "How many times longer than configured the registry's intervals are at most (1: as configured).",
        None,
        c.plans
            .iter()
            .map(|(k, p)| ([("registry", k.as_str())], p.2)),
    )?;
    gauges(
        e,
        "image_updater_poll_interval",
        "Each image's poll interval as planned within its registry's budget.",
        SECONDS,
        c.intervals
            .iter()
            .map(|(k, s)| ([("image", k.as_str())], *s)),
    )?;
    Ok(())
}

/// OpenMetrics text as the classic Prometheus text format: counter families named with their
/// `_total` suffix, and no `# UNIT` or `# EOF` lines. Samples and escaping are the same.
pub fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let described = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match described {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_text_names_counter_families_with_total_and_drops_openmetrics_lines() {
        let openmetrics = "# HELP a_cycle_seconds Time.\n# TYPE a_cycle_seconds counter\n# UNIT a_cycle_seconds seconds\na_cycle_seconds_total 1.5\n# HELP a_images Images.\n# TYPE a_images gauge\na_images 3\n# EOF\n";
        assert_eq!(
            classic(openmetrics),
            "# HELP a_cycle_seconds_total Time.\n# TYPE a_cycle_seconds_total counter\na_cycle_seconds_total 1.5\n# HELP a_images Images.\n# TYPE a_images gauge\na_images 3\n"
        );
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::Classic);
        assert_eq!(Format::negotiate(None), Format::Classic);
    }
}
