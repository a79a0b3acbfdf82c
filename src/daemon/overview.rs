//! What runs where and why, image by image and environment by environment: the rows that
//! `image-updater status`, the status page and its JSON all show, built in one place from the
//! config, the status entries, the holds and the budget plan, so the three never disagree.
//!
//! Also kept here, in memory only: the last verdicts on each image's tags ([`Explained`]), the
//! `test` command's explanation of why the candidate won and the others lost, for the page.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::budget::Plan;
use crate::config::{Config, Image};
use crate::state::{Holds, Status};

/// Where the rows' facts come from: the daemon's memory, a state dir, or etcd.
pub trait Known {
    /// The entry, without the history of writes (which no row shows).
    fn status(&self, alias: &str, environment: &str) -> Status;
    /// The replica that owns `image`, in a cluster.
    fn owner(&self, image: &Image) -> Option<String>;
}

/// The replica that owns `image` among `members` ("none live" when none is), in a cluster.
pub fn owner(members: Option<&crate::cluster::Members>, image: &Image) -> Option<String> {
    Some(
        members?
            .owner(&image.reference.repository())
            .unwrap_or("none live")
            .to_string(),
    )
}

/// One image in one environment.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub image: String,
    /// `image` or `chart`.
    pub kind: &'static str,
    /// The repository polled (a chart: `NAME from REPOSITORY`).
    pub source: String,
    /// The replica that owns the image, in a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub environment: String,
    pub branch: String,
    /// What the branch holds (`v1.5.0`, `v1.5.0@sha256:…`).
    pub current: Option<String>,
    /// The digest the branch's tag had when image-updater wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub candidate: Option<String>,
    /// The state in one word, and in words.
    pub state: State,
    pub state_text: String,
    /// Why the candidate is not on the branch, when it is not.
    pub waiting: Option<String>,
    /// Newer tags whose digests failed the `verify` rules, and why.
    pub unverified: Option<String>,
    /// The open pull (merge) request that proposes the candidate.
    pub request: Option<String>,
    pub hold: Option<String>,
    pub last_check: Option<String>,
    pub last_update: Option<String>,
    pub last_update_at: Option<String>,
    pub last_commit: Option<String>,
    pub last_error: Option<String>,
    /// How often the image is polled: its interval, stretched when its registry's budget
    /// cannot meet it.
    pub interval_seconds: f64,
}

/// An image's state in an environment, for filters and the page's badges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// The branch holds the candidate.
    UpToDate,
    /// The candidate is to be written at the next write.
    Pending,
    /// A rule keeps the candidate out for now (age, soak, window, signature, promotion).
    Waiting,
    /// A hold by hand, a pin, or a person's revert.
    Held,
    /// The last check or write failed.
    Failing,
    /// Not checked yet.
    Unknown,
}

impl State {
    pub fn word(self) -> &'static str {
        match self {
            State::UpToDate => "up to date",
            State::Pending => "to be written",
            State::Waiting => "waiting",
            State::Held => "held",
            State::Failing => "failing",
            State::Unknown => "unknown",
        }
    }

    /// The state a filter names (`up-to-date`, `waiting`, …).
    pub fn parse(text: &str) -> Option<State> {
        Some(match text {
            "up-to-date" => State::UpToDate,
            "pending" => State::Pending,
            "waiting" => State::Waiting,
            "held" => State::Held,
            "failing" => State::Failing,
            "unknown" => State::Unknown,
            _ => return None,
        })
    }

    pub const ALL: [State; 6] = [
        State::UpToDate,
        State::Pending,
        State::Waiting,
        State::Held,
        State::Failing,
        State::Unknown,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            State::UpToDate => "up-to-date",
            State::Pending => "pending",
            State::Waiting => "waiting",
            State::Held => "held",
            State::Failing => "failing",
            State::Unknown => "unknown",
        }
    }
}

/// Which rows: by image (a part of its alias), environment and state.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub image: Option<String>,
    /// The alias exactly, not a part of it.
    pub exact: bool,
    pub environment: Option<String>,
    pub state: Option<State>,
}

impl Filter {
    /// Whether the filter's image part selects `alias`.
    pub fn image(&self, alias: &str) -> bool {
        match &self.image {
            None => true,
            Some(want) if self.exact => want == alias,
            Some(want) => alias.contains(want.as_str()),
        }
    }
}

/// The rows `filter` selects, in the config's order (images by alias, then environments).
pub fn rows(
    config: &Config,
    plan: &Plan,
    known: &dyn Known,
    holds: &Holds,
    filter: &Filter,
) -> Vec<Row> {
    let images = config.images.values().filter(|i| filter.image(&i.alias));
    rows_of(config, plan, known, holds, images, filter)
}

/// The rows of `images` that `filter`'s environment and state select.
pub fn rows_of<'a>(
    config: &Config,
    plan: &Plan,
    known: &dyn Known,
    holds: &Holds,
    images: impl IntoIterator<Item = &'a Image>,
    filter: &Filter,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for image in images {
        for d in &image.deployments {
            if filter
                .environment
                .as_ref()
                .is_some_and(|e| *e != d.environment)
            {
                continue;
            }
            let s = known.status(&image.alias, &d.environment);
            let manual = holds
                .active(&image.alias, &d.environment)
                .map(crate::state::ManualHold::describe);
            let revert = s.held.as_ref().map(|h| {
                format!(
                    "revert: {} held since {} (the branch had {})",
                    h.value, h.since, h.found
                )
            });
            let pin = d
                .safety
                .pin
                .as_ref()
                .map(|p| format!("pinned to {p} in the config"));
            let hold = manual.or(revert).or(pin);
            let (state, state_text) = state_of(&s, hold.as_deref());
            if filter.state.is_some_and(|want| want != state) {
                continue;
            }
            let digest = match (&s.current, &s.written) {
                (Some(c), Some(w)) if c == w => s.written_digest.clone(),
                _ => None,
            }
            .or_else(|| {
                s.current
                    .as_deref()
                    .and_then(|c| c.split_once('@'))
                    .map(|(_, d)| d.to_string())
            });
            rows.push(Row {
                owner: known.owner(image),
                image: image.alias.clone(),
                kind: image.noun(),
                source: match image.source.chart(&image.reference) {
                    Some((repository, name)) => format!("{name} from {repository}"),
                    None => image.reference.repository(),
                },
                environment: d.environment.clone(),
                branch: config.environments[&d.environment].branch.clone(),
                current: s.current,
                digest,
                candidate: s.candidate,
                state,
                state_text,
                waiting: s.waiting,
                unverified: s.unverified,
                request: s.request,
                hold,
                last_check: s.last_check.map(|t| t.to_string()),
                last_update: s.last_update,
                last_update_at: s.last_update_at,
                last_commit: s.last_commit,
                last_error: s.last_error,
                interval_seconds: plan.interval(image).as_secs_f64(),
            });
        }
    }
    rows
}

/// The state, and the state in words, as the table's STATE column says it.
fn state_of(s: &Status, hold: Option<&str>) -> (State, String) {
    if let Some(e) = &s.last_error {
        (State::Failing, format!("error: {e}"))
    } else if let Some(h) = hold {
        (State::Held, h.to_string())
    } else if let Some(w) = &s.waiting {
        (State::Waiting, format!("waiting: {w}"))
    } else if s.current.is_some() && s.current == s.candidate {
        // Up to date with what verified; a newer tag the signature rules refused is said
        // here too, so "up to date" never hides a refused release.
        match &s.unverified {
            Some(u) => (State::UpToDate, format!("up to date; newer refused: {u}")),
            None => (State::UpToDate, "up to date".into()),
        }
    } else if s.candidate.is_some() {
        (State::Pending, "to be written".into())
    } else {
        (State::Unknown, "-".into())
    }
}

/// One tag's verdict at the last check.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub tag: String,
    pub chosen: bool,
    pub eligible: bool,
    pub reason: String,
}

/// What the last check of an image in an environment said of its tags: the winner and the
/// highest-ranking others, of how many.
#[derive(Debug, Clone, Serialize)]
pub struct TagsSeen {
    pub at: String,
    pub total: usize,
    pub verdicts: Vec<Verdict>,
}

/// How many tags' verdicts are kept per image and environment: what a person reads, and a
/// bound on memory at thousands of images.
pub const KEPT_VERDICTS: usize = 12;

/// The last verdicts on each image's tags, by image and environment; in memory, so only the
/// replica that checked an image has them.
#[derive(Debug, Default)]
pub struct Explained {
    seen: Mutex<HashMap<(String, String), Arc<TagsSeen>>>,
}

impl Explained {
    /// Keeps `choice`'s verdicts for `alias` in `environment`: the winner, then the other tags
    /// highest first by their version-like order.
    pub fn keep(&self, alias: &str, environment: &str, choice: &crate::poll::Choice) {
        let mut order: Vec<usize> = (0..choice.candidates.len()).collect();
        let selected = choice.selection.selected;
        let first = |&a: &usize, &b: &usize| {
            (Some(b) == selected)
                .cmp(&(Some(a) == selected))
                .then_with(|| natural(&choice.candidates[b].tag, &choice.candidates[a].tag))
        };
        // Every check passes here: only the kept few are sorted, not the whole tag list.
        if order.len() > KEPT_VERDICTS {
            order.select_nth_unstable_by(KEPT_VERDICTS - 1, first);
            order.truncate(KEPT_VERDICTS);
        }
        order.sort_by(first);
        let verdicts = order
            .into_iter()
            .filter_map(|i| {
                let verdict = choice.selection.verdicts.get(i)?;
                Some(Verdict {
                    tag: choice.candidates[i].tag.clone(),
                    chosen: Some(i) == selected,
                    eligible: verdict.eligible,
                    reason: verdict.reason.clone(),
                })
            })
            .collect();
        let seen = TagsSeen {
            at: crate::state::now(),
            total: choice.candidates.len(),
            verdicts,
        };
        self.seen
            .lock()
            .expect("explained lock")
            .insert((alias.into(), environment.into()), Arc::new(seen));
    }

    pub fn get(&self, alias: &str, environment: &str) -> Option<Arc<TagsSeen>> {
        self.seen
            .lock()
            .expect("explained lock")
            .get(&(alias.to_string(), environment.to_string()))
            .cloned()
    }

    /// Forgets images no longer in the config.
    pub fn retain(&self, config: &Config) {
        self.seen
            .lock()
            .expect("explained lock")
            .retain(|(alias, _), _| config.images.contains_key(alias));
    }
}

/// `digits` without its leading zeros.
fn significant(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

/// Tags compared as people read versions: runs of digits by value, the rest as text.
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let end = |s: &[u8]| {
                    s.iter()
                        .position(|c| !c.is_ascii_digit())
                        .unwrap_or(s.len())
                };
                let (na, nb) = (end(a), end(b));
                // Leading zeros aside, a longer run of digits is a larger number.
                let (ta, tb) = (significant(&a[..na]), significant(&b[..nb]));
                let by_value = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if by_value != std::cmp::Ordering::Equal {
                    return by_value;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_in_tags_compare_by_value() {
        use std::cmp::Ordering::*;
        assert_eq!(natural("v1.10.0", "v1.9.0"), Greater);
        assert_eq!(natural("v1.2.0", "v1.2.0"), Equal);
        assert_eq!(natural("1.02", "1.2"), Equal);
        assert_eq!(natural("main-10", "main-9"), Greater);
        assert_eq!(natural("v1", "v1.0"), Less);
        assert_eq!(natural("beta", "alpha"), Greater);
    }

    #[test]
    fn states_read_as_the_table_says_them() {
        let mut s = Status::default();
        assert_eq!(state_of(&s, None).0, State::Unknown);
        s.last_check = Some(jiff::Timestamp::UNIX_EPOCH);
        s.candidate = Some("v2".into());
        s.current = Some("v1".into());
        assert_eq!(state_of(&s, None).0, State::Pending);
        s.waiting = Some("v2: too young".into());
        assert_eq!(
            state_of(&s, None),
            (State::Waiting, "waiting: v2: too young".into())
        );
        assert_eq!(state_of(&s, Some("held by hand")).0, State::Held);
        s.last_error = Some("registry down".into());
        assert_eq!(state_of(&s, Some("held")).0, State::Failing);
        let s = Status {
            current: Some("v2".into()),
            candidate: Some("v2".into()),
            ..Status::default()
        };
        assert_eq!(state_of(&s, None).0, State::UpToDate);
        for state in State::ALL {
            assert_eq!(State::parse(state.slug()), Some(state));
        }
    }
}
