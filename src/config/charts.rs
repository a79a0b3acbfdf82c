//! `[charts.NAME]`: a Helm chart whose version is chosen and written as an image's tag is,
//! under the same policy keys, safety rules, environments and write modes.
//!
//! A chart comes from an OCI registry (`chart = "oci://ghcr.io/org/charts/ingress"`), read
//! through the registry client with the registry's credentials, budget and `verify` rules, or
//! from a chart repository (`repository = "https://…"` and `name`), whose `index.yaml` is read
//! with the section's own `credentials` and `ca_file`. Its targets are the files that pin a
//! chart's version (`helmrelease`, `ocirepository`, `argocd`, `chart-dependency`,
//! `kustomization-helm`); an image's keys that mean nothing for a chart (`platforms`,
//! `pin_digest`, the digest strategy) are errors where they are written.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::credentials::CredentialRef;
use super::diagnostic::Origin;
use super::model::{ChartIndex, Image, Registry, Settings, Source};
use super::raw::{RawImage, RawPolicy};
use super::validator::{Str, Validator, at};
use crate::reference::Reference;

/// The largest `index.yaml` read unless `max_index_size` says otherwise: the largest public
/// indexes are tens of megabytes.
pub const DEFAULT_MAX_INDEX_SIZE: u64 = 32 << 20;
/// `max_index_size` at most: past this, split the repository.
const MAX_INDEX_SIZE: u64 = 1 << 30;

impl Validator<'_> {
    pub(super) fn chart(
        &mut self,
        alias: &str,
        raw: RawImage,
        span: Range<usize>,
        registries: &BTreeMap<String, Registry>,
        environments: &[&str],
        settings: &Settings,
    ) -> Option<Image> {
        for (key, value) in [
            ("image", raw.image.as_ref().map(Spanned::span)),
            ("tags", raw.tags.as_ref().map(Spanned::span)),
            ("replaces", raw.replaces.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = value {
                self.error(
                    Origin::File(span),
                    format!("`{key}` is an image's key, not a chart's"),
                );
            }
        }
        let levels: Vec<Level> = std::iter::once(Level::of_chart(&raw))
            .chain(raw.env.values().map(|p| Level::of_env(p.get_ref())))
            .collect();
        for level in &levels {
            self.not_for_charts(level);
        }
        let (reference, source) = match (&raw.chart, &raw.repository) {
            (Some(chart), None) => {
                let repository_only = raw
                    .chart_keys()
                    .into_iter()
                    .filter(|(key, _)| !matches!(*key, "chart" | "repository"));
                for (key, span) in repository_only {
                    self.error_hint(
                        Origin::File(span),
                        format!("`{key}` is for charts in a chart repository"),
                        "an OCI chart is read with its registry's settings, in [registries.NAME]",
                    );
                }
                (self.oci_chart(chart), Source::OciChart)
            }
            (None, Some(url)) => {
                for verify in levels.iter().filter_map(|l| l.verify.clone()) {
                    self.error_hint(
                        Origin::File(verify),
                        "`verify` applies to charts in OCI registries, where cosign signs them",
                        "push the chart to an OCI registry and sign it there, or remove verify",
                    );
                }
                match self.chart_index(&raw, url, span.clone()) {
                    Some((reference, index)) => (Some(reference), Source::ChartIndex(index)),
                    None => (None, Source::Image),
                }
            }
            (Some(chart), Some(_)) => {
                self.error_hint(
                    at(chart),
                    "a chart is either `chart = \"oci://…\"` or `repository` with `name`, not both",
                    "keep the one the chart is published to",
                );
                (None, Source::Image)
            }
            (None, None) => {
                self.error_hint(
                    Origin::Section(span.clone()),
                    format!("chart `{alias}` says neither where it is published"),
                    "add chart = \"oci://ghcr.io/org/charts/NAME\", or repository = \"https://…\" and name = \"NAME\"",
                );
                (None, Source::Image)
            }
        };
        // The chart is unusable without its source; its policy and targets are still checked,
        // so one run of `check` shows their problems too.
        let source = match (&reference, source) {
            (Some(_), source) if source.is_chart() => source,
            _ => Source::OciChart,
        };
        self.deployable(
            alias,
            raw,
            span,
            reference,
            None,
            source,
            registries,
            environments,
            settings,
        )
    }

    /// The keys of an image's policy that mean nothing for a chart, where they are written.
    fn not_for_charts(&mut self, policy: &Level) {
        for (key, value) in [
            ("platforms", policy.platforms.clone()),
            ("pin_digest", policy.pin_digest.clone()),
            ("tag", policy.tag.clone()),
        ] {
            if let Some(span) = value {
                self.error(
                    Origin::File(span),
                    format!("`{key}` is an image's key: a chart's version is written as a version"),
                );
            }
        }
        if let Some(strategy) = policy.strategy
            && strategy.get_ref() == "digest"
        {
            self.error_hint(
                at(strategy),
                "a chart has no digest strategy: the files that pin a chart hold its version",
                "use strategy = \"semver\" (the default) with a constraint",
            );
        }
    }

    /// `oci://host/path/name`: the chart's repository in the registry.
    fn oci_chart(&mut self, chart: &Str) -> Option<Reference> {
        let Some(rest) = chart.get_ref().strip_prefix("oci://") else {
            self.error_hint(
                at(chart),
                format!("chart `{}` is not an OCI url", chart.get_ref()),
                "write it as oci://REGISTRY/PATH/CHART; a chart repository is repository = \"https://…\" with name",
            );
            return None;
        };
        let reference = self.parse(chart, "chart", |_| {
            Reference::parse(rest.trim_end_matches('/')).map_err(|e| format!("`{rest}`: {e}"))
        })?;
        if reference.domain.is_empty() || !rest.contains('/') {
            self.error(
                at(chart),
                format!("chart `{}` names no registry", chart.get_ref()),
            );
            return None;
        }
        if reference.tag.is_some() || reference.digest.is_some() {
            self.error_hint(
                at(chart),
                "chart must not name a version: the strategy chooses it",
                "remove the `:version`, and use pin = \"VERSION\" to hold one",
            );
            return None;
        }
        Some(reference)
    }

    /// `repository` and `name`: a chart repository, and the name the chart is known by.
    fn chart_index(
        &mut self,
        raw: &RawImage,
        url: &Str,
        span: Range<usize>,
    ) -> Option<(Reference, ChartIndex)> {
        let parsed = self.parse(url, "repository", |u| {
            let parsed = reqwest::Url::parse(u).map_err(|e| format!("`{u}` is not a url: {e}"))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(format!(
                    "`{u}` is not an http(s) url; an OCI chart is chart = \"oci://…\""
                ));
            }
            if parsed.host_str().is_none()
                || !parsed.username().is_empty()
                || parsed.password().is_some()
                || parsed.query().is_some()
                || parsed.fragment().is_some()
            {
                return Err(format!(
                    "`{u}` must be a plain url: put credentials in `credentials`, and nothing after the path"
                ));
            }
            Ok(parsed)
        });
        let name = match &raw.name {
            Some(name) => self.parse(name, "name", |n| {
                let valid = !n.is_empty()
                    && n.len() <= 250
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                valid.then(|| n.to_string()).ok_or_else(|| {
                    format!("`{n}` is not a chart name: letters, digits, `-`, `_` and `.`")
                })
            }),
            None => {
                self.error_hint(
                    Origin::Section(span),
                    "a chart from a chart repository needs its `name`",
                    "add name = \"CHART\", as `helm search repo` lists it",
                );
                None
            }
        };
        let credentials = raw
            .credentials
            .as_ref()
            .and_then(|c| self.parse(c, "credentials", CredentialRef::parse));
        if let (Some(url), Some(c)) = (&parsed, &raw.credentials)
            && url.scheme() == "http"
            && !is_loopback(url)
        {
            self.error_hint(
                at(c),
                "credentials would cross the network in the clear over http",
                "serve the repository over https",
            );
        }
        let max_index_size = match &raw.max_index_size {
            Some(size) => self.parse(size, "max_index_size", parse_size)?,
            None => DEFAULT_MAX_INDEX_SIZE,
        };
        let (url, name) = (parsed?, name?);
        let url = url.as_str().trim_end_matches('/').to_string();
        let reference = self.parse(raw.repository.as_ref()?, "repository", |_| {
            known_as(&url, &name)
        })?;
        Some((
            reference,
            ChartIndex {
                url,
                name,
                credentials,
                ca_file: raw.ca_file.as_ref().map(|p| PathBuf::from(p.get_ref())),
                max_index_size,
                allow_deprecated: raw.allow_deprecated.as_ref().is_some_and(|a| *a.get_ref()),
            },
        ))
    }
}

/// The keys of one level of a chart's policy (the chart's own, or an environment's) that
/// an image has and a chart has not, with where they are written.
struct Level<'a> {
    platforms: Option<Range<usize>>,
    pin_digest: Option<Range<usize>>,
    tag: Option<Range<usize>>,
    strategy: Option<&'a Str>,
    verify: Option<Range<usize>>,
}

impl<'a> Level<'a> {
    fn of_chart(raw: &'a RawImage) -> Level<'a> {
        Level {
            platforms: raw.platforms.as_ref().map(Spanned::span),
            pin_digest: raw.pin_digest.as_ref().map(Spanned::span),
            tag: raw.tag.as_ref().map(Spanned::span),
            strategy: raw.strategy.as_ref(),
            verify: raw.verify.as_ref().map(Spanned::span),
        }
    }

    fn of_env(raw: &'a RawPolicy) -> Level<'a> {
        Level {
            platforms: raw.platforms.as_ref().map(Spanned::span),
            pin_digest: raw.pin_digest.as_ref().map(Spanned::span),
            tag: raw.tag.as_ref().map(Spanned::span),
            strategy: raw.strategy.as_ref(),
            verify: raw.verify.as_ref().map(Spanned::span),
        }
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The name a chart from a chart repository is known by where an image's repository would
/// be (`status`, holds, the cluster's division of the work): the repository's host and path,
/// then the chart's name, in the characters a repository name may have.
fn known_as(url: &str, name: &str) -> Result<Reference, String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let clean = |part: &str| -> String {
        let lowered: String = part
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9') => c,
                _ => '-',
            })
            .collect();
        lowered.trim_matches('-').to_string()
    };
    let mut parts: Vec<String> = path
        .split('/')
        .map(clean)
        .filter(|p| !p.is_empty())
        .collect();
    parts.push(clean(name));
    let host = host.to_ascii_lowercase();
    // A host without a dot (`charts:8080`) reads as a Docker Hub namespace; this one is not.
    let host = if host.contains('.') || host.contains(':') || host == "localhost" {
        host
    } else {
        format!("{host}.local")
    };
    let text = format!("{host}/{}", parts.join("/"));
    Reference::parse(&text).map_err(|e| format!("cannot name the chart `{text}`: {e}"))
}

/// `32MiB`, `50MB`, `1048576`: a size in bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a size: write it like 32MiB, 50MB or 1048576");
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    let size = n.checked_mul(scale).ok_or_else(bad)?;
    if size == 0 || size > MAX_INDEX_SIZE {
        return Err(format!(
            "`{text}` must be more than zero and at most 1GiB; a larger index is a reason to split the repository"
        ));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_people_write_them() {
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("50MB"), Ok(50_000_000));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("2GiB").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999999999GB").is_err());
    }

    #[test]
    fn charts_in_repositories_are_known_by_their_url_and_name() {
        let r = known_as(
            "https://kubernetes.github.io/ingress-nginx",
            "ingress-nginx",
        )
        .unwrap();
        assert_eq!(
            r.repository(),
            "kubernetes.github.io/ingress-nginx/ingress-nginx"
        );
        let r = known_as("http://127.0.0.1:8080/Charts_v2", "my.chart").unwrap();
        assert_eq!(r.repository(), "127.0.0.1:8080/charts-v2/my-chart");
        let r = known_as("http://chartmuseum:8080", "api").unwrap();
        assert_eq!(r.repository(), "chartmuseum:8080/api");
        let r = known_as("http://chartmuseum", "api").unwrap();
        assert_eq!(r.repository(), "chartmuseum.local/api");
    }
}
