//! Counters of what the registry client did, for `/metrics` and for the request-count
//! benchmark: requests by registry, kind and status, 429s and the time spent waiting on them,
//! and metadata cache hits.
//!
//! Plain counters behind one lock: a poll cycle makes a handful of requests, so contention is
//! not a concern, and the daemon renders them in whatever exposition format it serves.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestKind {
    TagList,
    ManifestHead,
    ManifestGet,
    BlobGet,
    Token,
    /// `GET /v2/`, asked while the registry is down to learn when it is back.
    Probe,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::TagList => "tag_list",
            RequestKind::ManifestHead => "manifest_head",
            RequestKind::ManifestGet => "manifest_get",
            RequestKind::BlobGet => "blob_get",
            RequestKind::Token => "token",
            RequestKind::Probe => "probe",
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            RequestKind::ManifestHead => "HEAD",
            _ => "GET",
        }
    }
}

/// A request's outcome: an HTTP status, or `0` when no response came (timeout, refused).
pub type Status = u16;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// (registry, kind, status) -> count.
    pub requests: BTreeMap<(String, RequestKind, Status), u64>,
    /// registry -> 429 responses.
    pub rate_limited: BTreeMap<String, u64>,
    /// registry -> total time waited because of 429s and budgets.
    pub rate_limit_wait: BTreeMap<String, Duration>,
    pub cache_hits: u64,
    pub cache_misses: u64,
}

impl Snapshot {
    /// Requests of one kind, all registries and statuses.
    pub fn count(&self, kind: RequestKind) -> u64 {
        self.requests
            .iter()
            .filter(|((_, k, _), _)| *k == kind)
            .map(|(_, n)| n)
            .sum()
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut out = self.clone();
        for (key, n) in &earlier.requests {
            if let Some(v) = out.requests.get_mut(key) {
                *v -= n;
            }
        }
        out.requests.retain(|_, n| *n > 0);
        for (key, n) in &earlier.rate_limited {
            if let Some(v) = out.rate_limited.get_mut(key) {
                *v -= n;
            }
        }
        out.cache_hits -= earlier.cache_hits;
        out.cache_misses -= earlier.cache_misses;
        out
    }
}

/// Shared by every registry client of a process.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Snapshot>,
}

impl Metrics {
    pub fn request(&self, registry: &str, kind: RequestKind, status: Status) {
        let mut s = self.inner.lock().expect("metrics lock");
        *s.requests
            .entry((registry.to_string(), kind, status))
            .or_default() += 1;
        if status == 429 {
            *s.rate_limited.entry(registry.to_string()).or_default() += 1;
        }
    }

    pub fn waited(&self, registry: &str, wait: Duration) {
        let mut s = self.inner.lock().expect("metrics lock");
        *s.rate_limit_wait.entry(registry.to_string()).or_default() += wait;
    }

    pub fn cache(&self, hit: bool) {
        let mut s = self.inner.lock().expect("metrics lock");
        if hit {
            s.cache_hits += 1;
        } else {
            s.cache_misses += 1;
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.inner.lock().expect("metrics lock").clone()
    }
}
