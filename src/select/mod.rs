//! Tag selection: given the tags a registry has and a policy, which one to deploy, and why every
//! other tag was not chosen.
//!
//! Pure and synchronous on purpose: the registry client gathers candidates, the daemon decides
//! what to do with the answer, and this module can be tested, benchmarked and fuzzed alone. The
//! answer never depends on the order the registry listed the tags in: every strategy ranks by a
//! total order whose last key is the tag itself.

pub mod filter;
pub mod semver;

use std::cmp::Ordering;
use std::fmt;

pub use filter::{Extract, PatternError, TagPattern};
pub use semver::{Constraint, ConstraintError, Version};

/// A tag as the registry reports it. `created` and `digest` are filled in only when the strategy
/// needs them (newest-build and digest), since they cost requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub tag: String,
    pub created: Option<jiff::Timestamp>,
    pub digest: Option<String>,
    /// Set when the registry, or a rule beside the policy, keeps the tag out.
    pub unavailable: Option<Unavailable>,
}

/// Why a tag is kept out whatever the policy says, and the words a person reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub why: Barred,
    pub reason: String,
}

impl Unavailable {
    pub fn new(why: Barred, reason: impl Into<String>) -> Unavailable {
        Unavailable {
            why,
            reason: reason.into(),
        }
    }
}

/// What keeps a tag out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barred {
    /// The image lacks a platform the environment asks for.
    Platform,
    /// Its signatures do not meet the `verify` rules, or were not checked yet this poll.
    Unverified,
    /// Not `min_age` old yet.
    TooYoung,
    /// A person reverted it, or a tag ranking above it.
    Held,
    /// Its maintainers deprecated it (a chart repository's index says so).
    Deprecated,
}

impl Barred {
    /// A safety rule's waiting, which a later poll may end by itself (rather than something
    /// wrong with the image).
    pub fn is_waiting(self) -> bool {
        matches!(self, Barred::TooYoung | Barred::Held)
    }
}

impl Candidate {
    pub fn new(tag: impl Into<String>) -> Candidate {
        Candidate {
            tag: tag.into(),
            created: None,
            digest: None,
            unavailable: None,
        }
    }
}

/// How the winner among eligible tags is chosen.
#[derive(Debug, Clone)]
pub enum Strategy {
    /// The highest version that satisfies the constraint.
    Semver {
        constraint: Constraint,
        include_prerelease: bool,
    },
    /// The most recently built image (the image config's `created`).
    NewestBuild,
    /// The last tag in byte order.
    Alphabetical,
    /// The largest number.
    Numerical,
    /// One mutable tag, followed by its digest.
    Digest { tag: String },
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Semver { .. } => "semver",
            Strategy::NewestBuild => "newest-build",
            Strategy::Alphabetical => "alphabetical",
            Strategy::Numerical => "numerical",
            Strategy::Digest { .. } => "digest",
        }
    }

    /// Whether candidates need their creation time to be ranked.
    pub fn needs_created(&self) -> bool {
        matches!(self, Strategy::NewestBuild)
    }
}

/// A strategy's name as the config and the command line spell it, before its parameters
/// (constraint, tracked tag) are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    Semver,
    NewestBuild,
    Alphabetical,
    Numerical,
    Digest,
}

/// The strategy names accepted in the config and on the command line.
pub const STRATEGY_NAMES: &[&str] = &[
    "semver",
    "newest-build",
    "alphabetical",
    "numerical",
    "digest",
];

impl std::str::FromStr for StrategyKind {
    type Err = String;

    /// Parses a strategy name. Unknown names are errors, never a silent fallback; the names
    /// Argo CD Image Updater used for the same strategies get a pointed hint.
    fn from_str(name: &str) -> Result<StrategyKind, String> {
        Ok(match name {
            "semver" => StrategyKind::Semver,
            "newest-build" => StrategyKind::NewestBuild,
            "alphabetical" => StrategyKind::Alphabetical,
            "numerical" => StrategyKind::Numerical,
            "digest" => StrategyKind::Digest,
            "latest" => {
                return Err(
                    "unknown strategy `latest`: Argo CD's `latest` is called `newest-build` here"
                        .into(),
                );
            }
            "name" => {
                return Err(
                    "unknown strategy `name`: Argo CD's `name` is called `alphabetical` here"
                        .into(),
                );
            }
            other => {
                let hint = crate::suggest::suggest(other, STRATEGY_NAMES)
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                return Err(format!(
                    "unknown strategy `{other}`: {hint}expected one of {}",
                    STRATEGY_NAMES.join(", ")
                ));
            }
        })
    }
}

/// What the names a policy chooses among are: an image's tags, or a chart's versions (which
/// hold `+` where a tag cannot; Helm writes it `_` in an OCI tag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Names {
    #[default]
    ImageTags,
    ChartVersions,
}

impl Names {
    /// Whether `name` is one of these, checked before anything else reads it: names come from
    /// registries and chart repositories, and go into files and messages.
    fn admits(self, name: &str) -> Result<(), String> {
        match self {
            Names::ImageTags if crate::reference::is_valid_tag(name) => Ok(()),
            Names::ImageTags => {
                Err("not a valid tag (letters, digits, `_`, `.`, `-`; at most 128)".into())
            }
            Names::ChartVersions if name.len() <= 128 && ::semver::Version::parse(name).is_ok() => {
                Ok(())
            }
            Names::ChartVersions => {
                Err("not a chart version (Semantic Versioning 2, at most 128 characters)".into())
            }
        }
    }
}

/// Everything that decides which tag is deployed.
#[derive(Debug, Clone)]
pub struct Policy {
    pub strategy: Strategy,
    /// Tags or chart versions.
    pub names: Names,
    /// A tag must match one of these, when any are given.
    pub allow: Vec<TagPattern>,
    /// A tag matching any of these is never deployed.
    pub ignore: Vec<TagPattern>,
    /// Builds the sort key from part of the tag.
    pub extract: Option<Extract>,
}

impl Policy {
    pub fn new(strategy: Strategy) -> Policy {
        Policy {
            strategy,
            names: Names::ImageTags,
            allow: Vec::new(),
            ignore: Vec::new(),
            extract: None,
        }
    }
}

/// What happened to one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub eligible: bool,
    pub reason: String,
}

/// The outcome for a list of candidates: the winner's index and a verdict per candidate, in the
/// candidates' order.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub selected: Option<usize>,
    pub verdicts: Vec<Verdict>,
}

/// The sort key an eligible candidate ranks by; the tag breaks ties.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Rank<'a> {
    Version(Version),
    Time(jiff::Timestamp),
    Text(&'a str),
    Number(Number<'a>),
    Tracked,
}

/// A non-negative decimal number compared by value without overflow: `010` equals `10`, and
/// `20260101120000` is larger than `999`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Number<'a> {
    int: &'a str,
    frac: &'a str,
}

impl<'a> Number<'a> {
    fn parse(text: &'a str) -> Option<Number<'a>> {
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || (text.ends_with('.')) {
            return None;
        }
        Some(Number {
            int: int.trim_start_matches('0'),
            frac: frac.trim_end_matches('0'),
        })
    }
}

impl Ord for Number<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac))
    }
}

impl PartialOrd for Number<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Judges every candidate and picks the best eligible one.
pub fn select(policy: &Policy, candidates: &[Candidate]) -> Selection {
    let mut verdicts = Vec::with_capacity(candidates.len());
    let mut best: Option<(Rank<'_>, &str, usize)> = None;
    for (index, candidate) in candidates.iter().enumerate() {
        match rank(policy, candidate) {
            Ok(rank) => {
                let better = match &best {
                    None => true,
                    Some((r, tag, _)) => (&rank, candidate.tag.as_str()) > (r, *tag),
                };
                if better {
                    best = Some((rank, &candidate.tag, index));
                }
                verdicts.push(Verdict {
                    eligible: true,
                    reason: String::new(),
                });
            }
            Err(reason) => verdicts.push(Verdict {
                eligible: false,
                reason,
            }),
        }
    }
    let selected = best.map(|(_, _, index)| index);
    if let Some(winner) = selected {
        let winner_tag = &candidates[winner].tag;
        for (index, verdict) in verdicts.iter_mut().enumerate() {
            if !verdict.eligible {
                continue;
            }
            verdict.reason = if index == winner {
                format!("selected: {}", win_reason(&policy.strategy))
            } else if candidates[index].tag == *winner_tag {
                "eligible, listed twice".to_string()
            } else {
                format!("eligible, but `{winner_tag}` ranks higher")
            };
        }
    }
    Selection { selected, verdicts }
}

fn win_reason(strategy: &Strategy) -> String {
    match strategy {
        Strategy::Semver { constraint, .. } if constraint.as_str().is_empty() => {
            "highest release (no constraint)".into()
        }
        Strategy::Semver { constraint, .. } => {
            format!("highest version satisfying `{constraint}`")
        }
        Strategy::NewestBuild => "most recently built".into(),
        Strategy::Alphabetical => "last in alphabetical order".into(),
        Strategy::Numerical => "highest number".into(),
        Strategy::Digest { .. } => "tracked tag".into(),
    }
}

/// The candidate's rank, or why it is not eligible. Filters apply first, in the order a user
/// reads the config: ignore, allow, extract, then the strategy's own test.
fn rank<'a>(policy: &Policy, candidate: &'a Candidate) -> Result<Rank<'a>, String> {
    let key = filter(policy, &candidate.tag)?;
    if let Some(unavailable) = &candidate.unavailable {
        return Err(unavailable.reason.clone());
    }
    let rank = order_key(policy, key, candidate)?;
    if let (
        Strategy::Semver {
            constraint,
            include_prerelease,
        },
        Rank::Version(version),
    ) = (&policy.strategy, &rank)
        && !constraint.matches(version, *include_prerelease)
    {
        return Err(constraint.explain_mismatch(version, *include_prerelease));
    }
    Ok(rank)
}

/// Where the strategy places `key` (the candidate's tag or its extracted part), constraints
/// aside.
fn order_key<'a>(policy: &Policy, key: &'a str, candidate: &Candidate) -> Result<Rank<'a>, String> {
    match &policy.strategy {
        Strategy::Semver { .. } => {
            Version::parse(key)
                .map(Rank::Version)
                .map_err(|e| match &policy.extract {
                    Some(_) => format!("extracted `{key}` is {e}"),
                    None => e.to_string(),
                })
        }
        Strategy::NewestBuild => candidate
            .created
            .map(Rank::Time)
            .ok_or_else(|| "creation time unknown".to_string()),
        Strategy::Alphabetical => Ok(Rank::Text(key)),
        Strategy::Numerical => Number::parse(key)
            .map(Rank::Number)
            .ok_or_else(|| format!("`{key}` is not a number")),
        Strategy::Digest { .. } => Ok(Rank::Tracked),
    }
}

/// The rank of `tag` regardless of the filters, looked up among `candidates` for its creation
/// time; `None` when the strategy cannot place it.
fn rank_of<'a>(
    policy: &Policy,
    candidates: &[Candidate],
    tag: &'a str,
) -> Option<(Rank<'a>, &'a str)> {
    let key = match &policy.extract {
        Some(e) => e.key(tag)?,
        None => tag,
    };
    let found = candidates
        .iter()
        .find(|c| c.tag == tag)
        .cloned()
        .unwrap_or_else(|| Candidate::new(tag));
    match order_key(policy, key, &found).ok()? {
        Rank::Tracked => None,
        rank => Some((rank, tag)),
    }
}

/// Whether `a` ranks above `b` under the policy's strategy; `None` when either cannot be
/// placed (not a version, creation time unknown, the digest strategy).
pub fn outranks(policy: &Policy, candidates: &[Candidate], a: &str, b: &str) -> Option<bool> {
    Some(rank_of(policy, candidates, a)? > rank_of(policy, candidates, b)?)
}

/// Marks `floor` and every candidate ranking below it unavailable, with `reason`: a person
/// reverted `floor`, so it and anything older stay out until something newer appears.
pub fn hold_at_or_below(policy: &Policy, candidates: &mut [Candidate], floor: &str, reason: &str) {
    let snapshot = candidates.to_vec();
    let Some(floor_rank) = rank_of(policy, &snapshot, floor) else {
        // Unrankable (the digest strategy): hold the tag itself.
        for c in candidates.iter_mut().filter(|c| c.tag == floor) {
            c.unavailable = Some(Unavailable::new(Barred::Held, reason));
        }
        return;
    };
    for (i, c) in candidates.iter_mut().enumerate() {
        let below = rank_of(policy, &snapshot, &snapshot[i].tag).is_some_and(|r| r <= floor_rank);
        if below && c.unavailable.is_none() {
            c.unavailable = Some(Unavailable::new(Barred::Held, reason));
        }
    }
}

/// The tag filters alone, before anything about the image is known: the digest strategy's
/// tracked tag, `ignore_tags`, `allow_tags` and `extract`. Returns the sort key (the extracted
/// part, or the whole tag), or why the tag is out. The registry client uses this to avoid
/// fetching metadata for tags that can never be chosen.
pub fn filter<'t>(policy: &Policy, tag: &'t str) -> Result<&'t str, String> {
    policy.names.admits(tag)?;
    if let Strategy::Digest { tag: tracked } = &policy.strategy {
        return if tag == tracked {
            Ok(tag)
        } else {
            Err(format!("digest strategy follows only `{tracked}`"))
        };
    }
    if let Some(p) = policy.ignore.iter().find(|p| p.is_match(tag)) {
        return Err(format!("matches ignore_tags `{p}`"));
    }
    if !policy.allow.is_empty() && !policy.allow.iter().any(|p| p.is_match(tag)) {
        return Err("matches no allow_tags pattern".into());
    }
    match &policy.extract {
        Some(extract) => extract
            .key(tag)
            .ok_or_else(|| format!("does not match extract `{}`", extract.as_str())),
        None => Ok(tag),
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<Candidate> {
        list.iter().map(|t| Candidate::new(*t)).collect()
    }

    fn semver(c: &str) -> Policy {
        Policy::new(Strategy::Semver {
            constraint: Constraint::parse(c).unwrap(),
            include_prerelease: false,
        })
    }

    fn winner(policy: &Policy, list: &[Candidate]) -> Option<String> {
        select(policy, list).selected.map(|i| list[i].tag.clone())
    }

    #[test]
    fn malformed_tags_from_a_registry_are_never_eligible() {
        // Found by fuzzing the YAML editor: a tag with `:` written into `repo:tag` reads back
        // as a different repository.
        let list = tags(&[
            "v1.0.0",
            "v9.0.0:evil",
            "v9.0.0\n",
            ".v9.0.0",
            &"9".repeat(129),
        ]);
        let s = select(&semver("*"), &list);
        assert_eq!(s.selected, Some(0));
        assert!(
            s.verdicts[1..]
                .iter()
                .all(|v| v.reason.starts_with("not a valid tag"))
        );
    }

    #[test]
    fn prod_takes_the_highest_stable_release_within_the_major() {
        let list = tags(&[
            "v1.4.0",
            "v1.5.0-rc.1",
            "v1.5.0",
            "v2.0.0",
            "main-abc1234",
            "latest",
        ]);
        let mut policy = semver(">=1.0.0 <2.0.0");
        policy.ignore = vec![TagPattern::parse("regexp:(-rc|-alpha|-beta)").unwrap()];
        let s = select(&policy, &list);
        assert_eq!(winner(&policy, &list).as_deref(), Some("v1.5.0"));
        assert_eq!(
            s.verdicts[1].reason,
            "matches ignore_tags `regexp:(-rc|-alpha|-beta)`"
        );
        assert_eq!(s.verdicts[3].reason, "outside constraint `>=1.0.0 <2.0.0`");
        assert_eq!(s.verdicts[4].reason, "not a semantic version");
        assert!(s.verdicts[0].reason.contains("`v1.5.0` ranks higher"));
    }

    #[test]
    fn staging_takes_release_candidates() {
        let list = tags(&["v1.4.0", "v1.5.0-rc.1", "v1.5.0-rc.2", "main-abc1234"]);
        let mut policy = semver(">=1.0.0-rc.0");
        policy.allow = vec![TagPattern::parse(r"regexp:^v[0-9]+\.[0-9]+\.[0-9]+-rc").unwrap()];
        assert_eq!(winner(&policy, &list).as_deref(), Some("v1.5.0-rc.2"));
    }

    #[test]
    fn equal_versions_prefer_the_longer_spelling() {
        let list = tags(&["v2.0", "v2.0.0", "2.0.0"]);
        assert_eq!(winner(&semver(""), &list).as_deref(), Some("v2.0.0"));
    }

    #[test]
    fn newest_build_ranks_by_creation_time_then_tag() {
        let t = |s: &str| Some(s.parse::<jiff::Timestamp>().unwrap());
        let list = vec![
            Candidate {
                created: t("2026-01-01T00:00:00Z"),
                ..Candidate::new("main-aaaaaaa")
            },
            Candidate {
                created: t("2026-01-02T00:00:00Z"),
                ..Candidate::new("main-bbbbbbb")
            },
            Candidate {
                created: t("2026-01-02T00:00:00Z"),
                ..Candidate::new("main-0000000")
            },
            Candidate::new("main-ccccccc"),
        ];
        let policy = Policy::new(Strategy::NewestBuild);
        let s = select(&policy, &list);
        assert_eq!(winner(&policy, &list).as_deref(), Some("main-bbbbbbb"));
        assert_eq!(s.verdicts[3].reason, "creation time unknown");
    }

    #[test]
    fn numerical_compares_values_not_strings() {
        let list = tags(&["9", "10", "010", "abc", "1.5", "10.25"]);
        let policy = Policy::new(Strategy::Numerical);
        assert_eq!(winner(&policy, &list).as_deref(), Some("10.25"));
        let mut policy = Policy::new(Strategy::Numerical);
        policy.extract = Some(Extract::parse(r"^main-(?P<ts>\d+)-[a-f0-9]+$").unwrap());
        let list = tags(&["main-99-abc", "main-100-def", "main-x-0"]);
        let s = select(&policy, &list);
        assert_eq!(s.selected, Some(1));
        assert!(s.verdicts[2].reason.starts_with("does not match extract"));
    }

    #[test]
    fn alphabetical_and_digest() {
        let list = tags(&["2026-01-03", "2026-01-10", "2025-12-31"]);
        assert_eq!(
            winner(&Policy::new(Strategy::Alphabetical), &list).as_deref(),
            Some("2026-01-10")
        );
        let digest = Policy::new(Strategy::Digest {
            tag: "stable".into(),
        });
        let list = tags(&["latest", "stable"]);
        assert_eq!(winner(&digest, &list).as_deref(), Some("stable"));
    }

    #[test]
    fn nothing_eligible_selects_nothing() {
        let s = select(&semver(">=3"), &tags(&["v1.0.0", "v2.0.0"]));
        assert_eq!(s.selected, None);
        assert!(s.verdicts.iter().all(|v| !v.eligible));
    }
}
