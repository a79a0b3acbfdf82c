//! A registry's own account of how many requests it will still take: the budget headers it
//! sends, read and believed only for the window it names.

// Numbers here come from registries and clocks: no arithmetic that can overflow or panic.
#![deny(clippy::arithmetic_side_effects)]

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::HeaderMap;

/// The registry's own account of its request budget: Docker Hub's `ratelimit-*` headers
/// (`100;w=21600`), the IETF draft's `RateLimit-*`, and the `X-RateLimit-*` many others send.
/// It holds only until the window the registry announced ends (`RateLimit-Reset`, the `w=`
/// window, a 429's `Retry-After`, else [`BUDGET_RECHECK`]); after that it is unknown again,
/// so a spent budget never stops manifest requests for longer than the registry asked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub remaining: Option<u64>,
    pub limit: Option<u64>,
    /// When the registry's window ends and the numbers no longer hold.
    pub resets_at: Option<Instant>,
}

impl Budget {
    /// Below a fifth of the limit: time for the scheduler to poll this registry less often.
    pub fn is_low(&self) -> bool {
        matches!((self.remaining, self.limit), (Some(r), Some(l)) if l > 0 && r.saturating_mul(5) < l)
    }

    /// The budget as of `now`: unknown once its window has ended.
    pub(super) fn as_of(self, now: Instant) -> Budget {
        match self.resets_at {
            Some(at) if at <= now => Budget::default(),
            _ => self,
        }
    }

    /// Reads the budget headers of one response; `None` when it has none.
    pub(super) fn from_headers(headers: &HeaderMap, now: Instant) -> Option<Budget> {
        let field = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| headers.get(*n))
                .and_then(|v| v.to_str().ok())
        };
        let number = |v: &str| v.split([';', ',']).next()?.trim().parse::<u64>().ok();
        // Docker Hub: `100;w=21600`, the window in seconds.
        let window = |v: &str| {
            v.split(';')
                .skip(1)
                .find_map(|p| p.trim().strip_prefix("w="))
                .and_then(|w| w.trim().parse::<u64>().ok())
        };
        let remaining_text = field(["ratelimit-remaining", "x-ratelimit-remaining"]);
        let limit_text = field(["ratelimit-limit", "x-ratelimit-limit"]);
        let remaining = remaining_text.and_then(number);
        let limit = limit_text.and_then(number);
        if remaining.is_none() && limit.is_none() {
            return None;
        }
        let reset = field(["ratelimit-reset", "x-ratelimit-reset"])
            .and_then(number)
            .map(|n| {
                // Seconds until the reset, or (GitHub and others) the Unix time of it.
                let unix_now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                if n > 1_000_000_000 {
                    n.saturating_sub(unix_now)
                } else {
                    n
                }
            })
            .or_else(|| remaining_text.and_then(window))
            .or_else(|| limit_text.and_then(window))
            .map(Duration::from_secs)
            .unwrap_or(BUDGET_RECHECK)
            .min(MAX_BUDGET_WINDOW);
        Some(Budget {
            remaining,
            limit,
            resets_at: now.checked_add(reset),
        })
    }
}

/// A spent pull budget whose window ends within this is waited out rather than failed.
pub(super) const SHORT_WINDOW: Duration = Duration::from_secs(10);

/// How long a budget is believed when the registry names no window.
pub const BUDGET_RECHECK: Duration = Duration::from_secs(60);
/// The longest window a registry's budget headers are believed for.
pub const MAX_BUDGET_WINDOW: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets() {
        assert!(
            Budget {
                remaining: Some(10),
                limit: Some(100),
                resets_at: None,
            }
            .is_low()
        );
        assert!(
            !Budget {
                remaining: Some(50),
                limit: Some(100),
                resets_at: None,
            }
            .is_low()
        );
        assert!(!Budget::default().is_low());
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, value.parse().unwrap());
        }
        h
    }

    /// A spent budget holds only for the window the registry announced, however it says it.
    #[test]
    fn budgets_end_with_their_window() {
        let now = Instant::now();
        let secs = |b: Budget| b.resets_at.unwrap().duration_since(now).as_secs();
        // Docker Hub: the window rides on the numbers.
        let hub = Budget::from_headers(
            &headers(&[
                ("ratelimit-limit", "100;w=21600"),
                ("ratelimit-remaining", "0;w=21600"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(
            (hub.remaining, hub.limit, secs(hub)),
            (Some(0), Some(100), 21600)
        );
        // The IETF draft: seconds until the reset.
        let draft = Budget::from_headers(
            &headers(&[("RateLimit-Remaining", "0"), ("RateLimit-Reset", "30")]),
            now,
        )
        .unwrap();
        assert_eq!(secs(draft), 30);
        // X-RateLimit-Reset as a Unix time.
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 90;
        let github = Budget::from_headers(
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-reset", &unix.to_string()),
            ]),
            now,
        )
        .unwrap();
        assert!((88..=90).contains(&secs(github)), "{}", secs(github));
        // No window named: believed for a minute. An absurd one: a day at most.
        let bare = Budget::from_headers(&headers(&[("ratelimit-remaining", "0")]), now).unwrap();
        assert_eq!(secs(bare), BUDGET_RECHECK.as_secs());
        let absurd = Budget::from_headers(
            &headers(&[
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", "999999999"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(secs(absurd), MAX_BUDGET_WINDOW.as_secs());
        // After the window the budget is unknown, and manifests may be fetched again.
        assert_eq!(
            draft.as_of(now + Duration::from_secs(31)),
            Budget::default()
        );
        assert_eq!(draft.as_of(now + Duration::from_secs(29)), draft);
        assert!(Budget::from_headers(&headers(&[("retry-after", "5")]), now).is_none());
    }
}
