//! Versions and constraints with the semantics of Masterminds/semver v3.4.
//!
//! Why not `semver::VersionReq`: it applies Cargo's rules (a bare `1.2` means `^1.2`, only commas
//! join comparators, prereleases only on the same `major.minor.patch`), while the constraints our
//! users bring from Argo CD Image Updater and Helm are Masterminds constraints: a space or a comma
//! joins comparators, `||` separates alternatives, `1.2` means `1.2.x`, hyphen ranges, `v`
//! prefixes, short versions, and a prerelease in any comparator of an `||` group opens that whole
//! group to prereleases. A constraint that meant one thing in Argo CD must mean the same here.
//!
//! The `semver` crate still owns what it is good at: validating prerelease identifiers and
//! ordering them by semver precedence.

use std::cmp::Ordering;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// A version as a tag spells it: `v1.2.3`, `1.2`, `1.2.3-rc.1+build.5`.
///
/// Short versions are padded with zeros (`1.2` is `1.2.0`); build metadata is validated and
/// ignored for ordering, as semver requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: semver::Prerelease,
}

/// Why a string is not a version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("not a semantic version")]
    Invalid,
    #[error("a numeric prerelease identifier starts with zero")]
    LeadingZero,
}

impl Version {
    /// Parses like Masterminds' `NewVersion`: an optional `v`, one to three numeric parts
    /// (leading zeros allowed), then an optional `-prerelease` and `+metadata`.
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let bytes = text.as_bytes();
        let mut i = usize::from(bytes.first() == Some(&b'v'));
        let mut parts = [0u64; 3];
        let mut count = 0;
        while count < 3 {
            if count > 0 {
                if bytes.get(i) != Some(&b'.') {
                    break;
                }
                i += 1;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(VersionError::Invalid);
            }
            parts[count] = text[start..i].parse().map_err(|_| VersionError::Invalid)?;
            count += 1;
        }
        let mut pre = semver::Prerelease::EMPTY;
        if bytes.get(i) == Some(&b'-') {
            let start = i + 1;
            i = scan_identifiers(bytes, start).ok_or(VersionError::Invalid)?;
            pre = prerelease(&text[start..i])?;
        }
        if bytes.get(i) == Some(&b'+') {
            i = scan_identifiers(bytes, i + 1).ok_or(VersionError::Invalid)?;
        }
        if i != bytes.len() {
            return Err(VersionError::Invalid);
        }
        Ok(Version {
            major: parts[0],
            minor: parts[1],
            patch: parts[2],
            pre,
        })
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

/// Returns the end of a dot-separated run of `[0-9A-Za-z-]+` identifiers starting at `start`.
fn scan_identifiers(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    loop {
        let ident = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-') {
            i += 1;
        }
        if ident == i {
            return None;
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
        } else {
            return Some(i);
        }
    }
}

fn prerelease(text: &str) -> Result<semver::Prerelease, VersionError> {
    // The charset was checked by the scanner, so the only remaining failure is a numeric
    // identifier with a leading zero, which semver forbids.
    semver::Prerelease::new(text).map_err(|_| VersionError::LeadingZero)
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// A bare version or `=`: equal, or a tilde range when parts are wildcards or missing.
    TildeOrEqual,
    NotEqual,
    Greater,
    GreaterEqual,
    Less,
    LessEqual,
    Tilde,
    Caret,
}

/// One comparator such as `>=1.2` or `~1.x`.
#[derive(Debug, Clone)]
struct Comparator {
    op: Op,
    version: Version,
    /// Some part was a wildcard or missing (`1.x`, `1`, `*`).
    dirty: bool,
    /// The minor part was a wildcard or missing (`1`, `1.x`).
    minor_dirty: bool,
    /// The patch part was a wildcard or missing (`1.2`, `1.2.x`).
    patch_dirty: bool,
}

/// A group of comparators that must all hold; prereleases are candidates for the whole group
/// when any of its comparators names one.
#[derive(Debug, Clone)]
struct Group {
    comparators: Vec<Comparator>,
    has_prerelease: bool,
}

/// A parsed constraint: `||`-separated groups.
#[derive(Debug, Clone)]
pub struct Constraint {
    source: String,
    groups: Vec<Group>,
}

/// Why a constraint did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConstraintError {
    pub message: String,
}

// The grammar of one version in a constraint, and of the operators. These mirror the
// Masterminds expressions so that what it accepts and refuses is accepted and refused here.
const CV: &str = r"(?P<version>v?(?P<major>[0-9|xX*]+)(?P<minor>\.[0-9|xX*]+)?(?P<patch>\.[0-9|xX*]+)?(?P<pre>-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)";
const CV_NOGROUPS: &str = r"v?[0-9|xX*]+(?:\.[0-9|xX*]+)?(?:\.[0-9|xX*]+)?(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?";
const OPS: &str = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^";
const WS: &str = r"[\t\n\f\r ]";

static VALID_GROUP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"^({WS}*(?:{OPS}){WS}*{CV_NOGROUPS}{WS}*)((?:{WS}+|,{WS}*)(?:{OPS}){WS}*{CV_NOGROUPS}{WS}*)*$"
    ))
    .expect("constraint grammar")
});
static FIND_COMPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?:{OPS}){WS}*{CV_NOGROUPS}")).expect("comparator grammar")
});
static COMPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"^{WS}*(?P<op>{OPS}){WS}*{CV}{WS}*$")).expect("comparator grammar")
});
static HYPHEN_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"{WS}*({CV_NOGROUPS}){WS}+-{WS}+({CV_NOGROUPS}){WS}*"
    ))
    .expect("range grammar")
});

fn is_wildcard(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

impl Comparator {
    fn parse(text: &str) -> Result<Comparator, ConstraintError> {
        let caps = COMPARATOR.captures(text).ok_or_else(|| ConstraintError {
            message: format!("`{}` is not a comparator", text.trim()),
        })?;
        let op = match &caps["op"] {
            "" | "=" => Op::TildeOrEqual,
            "!=" => Op::NotEqual,
            ">" => Op::Greater,
            ">=" | "=>" => Op::GreaterEqual,
            "<" => Op::Less,
            "<=" | "=<" => Op::LessEqual,
            "~" | "~>" => Op::Tilde,
            "^" => Op::Caret,
            other => unreachable!("operator {other} is in the grammar"),
        };
        let major = &caps["major"];
        let minor = caps.name("minor").map_or("", |m| &m.as_str()[1..]);
        let patch = caps.name("patch").map_or("", |m| &m.as_str()[1..]);
        let pre = caps.name("pre").map_or("", |m| m.as_str());
        let (normalized, minor_dirty, patch_dirty) = if is_wildcard(major) {
            (format!("0.0.0{pre}"), false, false)
        } else if is_wildcard(minor) || minor.is_empty() {
            (format!("{major}.0.0{pre}"), true, false)
        } else if is_wildcard(patch) || patch.is_empty() {
            (format!("{major}.{minor}.0{pre}"), false, true)
        } else {
            (caps["version"].to_string(), false, false)
        };
        let dirty = is_wildcard(major) || minor_dirty || patch_dirty;
        let version = Version::parse(&normalized).map_err(|e| ConstraintError {
            message: format!("`{}` in `{}`: {e}", normalized, text.trim()),
        })?;
        Ok(Comparator {
            op,
            version,
            dirty,
            minor_dirty,
            patch_dirty,
        })
    }

    fn matches(&self, v: &Version, include_pre: bool) -> bool {
        if v.is_prerelease() && !include_pre {
            return false;
        }
        let c = &self.version;
        match self.op {
            Op::TildeOrEqual if self.dirty => self.tilde(v),
            Op::TildeOrEqual => v == c,
            Op::NotEqual => self.not_equal(v),
            Op::Greater => self.greater(v),
            Op::GreaterEqual => v >= c,
            Op::Less => v < c,
            Op::LessEqual => self.less_equal(v),
            Op::Tilde => self.tilde(v),
            Op::Caret => self.caret(v),
        }
    }

    fn not_equal(&self, v: &Version) -> bool {
        let c = &self.version;
        if self.dirty {
            if c.major != v.major {
                return true;
            }
            if c.minor != v.minor && !self.minor_dirty {
                return true;
            } else if self.minor_dirty {
                return false;
            } else if c.patch != v.patch && !self.patch_dirty {
                return true;
            } else if self.patch_dirty {
                if v.is_prerelease() || c.is_prerelease() {
                    return v.pre != c.pre;
                }
                return false;
            }
        }
        v != c
    }

    fn greater(&self, v: &Version) -> bool {
        let c = &self.version;
        if !self.dirty {
            return v > c;
        }
        if v.major != c.major {
            return v.major > c.major;
        }
        if self.minor_dirty {
            // `>11` needs 12 or above: 11.1.0 is not greater than 11.
            return false;
        }
        if self.patch_dirty {
            // `>11.1` needs 11.2 or above.
            return v.minor > c.minor;
        }
        v > c
    }

    fn less_equal(&self, v: &Version) -> bool {
        let c = &self.version;
        if !self.dirty {
            return v <= c;
        }
        if v.major > c.major {
            return false;
        }
        !(v.major == c.major && v.minor > c.minor && !self.minor_dirty)
    }

    fn tilde(&self, v: &Version) -> bool {
        let c = &self.version;
        if v < c {
            return false;
        }
        // `~0.0.0` and `~*` accept everything at or above zero.
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !self.minor_dirty && !self.patch_dirty {
            return true;
        }
        if v.major != c.major {
            return false;
        }
        v.minor == c.minor || self.minor_dirty
    }

    fn caret(&self, v: &Version) -> bool {
        let c = &self.version;
        if v < c {
            return false;
        }
        if c.major > 0 || self.minor_dirty {
            return v.major == c.major;
        }
        if v.major > 0 {
            return false;
        }
        if c.minor > 0 || self.patch_dirty {
            return v.minor == c.minor;
        }
        if v.minor > 0 {
            return false;
        }
        c.patch == v.patch
    }
}

impl Constraint {
    /// Parses a constraint; the empty string means `*`.
    pub fn parse(text: &str) -> Result<Constraint, ConstraintError> {
        let source = text.to_string();
        if text.trim().is_empty() {
            return Constraint::parse("*").map(|c| Constraint { source, ..c });
        }
        let rewritten = HYPHEN_RANGE.replace_all(text, ">= $1, <= $2 ");
        let mut groups = Vec::new();
        for alternative in rewritten.split("||") {
            if !VALID_GROUP.is_match(alternative) {
                return Err(ConstraintError {
                    message: if alternative.trim().is_empty() {
                        "an `||` alternative is empty".to_string()
                    } else {
                        format!("`{}` is not a valid constraint", alternative.trim())
                    },
                });
            }
            let comparators = FIND_COMPARATOR
                .find_iter(alternative)
                .map(|m| Comparator::parse(m.as_str()))
                .collect::<Result<Vec<_>, _>>()?;
            let has_prerelease = comparators.iter().any(|c| c.version.is_prerelease());
            groups.push(Group {
                comparators,
                has_prerelease,
            });
        }
        Ok(Constraint { source, groups })
    }

    /// Whether `version` satisfies some `||` alternative. With `include_prerelease`, every
    /// group considers prereleases, as Masterminds' `IncludePrerelease` does.
    pub fn matches(&self, version: &Version, include_prerelease: bool) -> bool {
        self.groups.iter().any(|g| {
            let pre = include_prerelease || g.has_prerelease;
            g.comparators.iter().all(|c| c.matches(version, pre))
        })
    }

    /// Why a version that does not match was refused, for the selection report.
    pub fn explain_mismatch(&self, version: &Version, include_prerelease: bool) -> String {
        if version.is_prerelease()
            && !include_prerelease
            && !self.groups.iter().any(|g| g.has_prerelease)
        {
            format!(
                "prerelease, and constraint `{}` names no prerelease",
                self.source
            )
        } else {
            format!("outside constraint `{}`", self.source)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(c: &str, v: &str) -> bool {
        Constraint::parse(c)
            .unwrap()
            .matches(&Version::parse(v).unwrap(), false)
    }

    #[test]
    fn versions_parse_like_masterminds() {
        assert_eq!(Version::parse("v1.2").unwrap().to_string(), "1.2.0");
        assert_eq!(Version::parse("01.1.1").unwrap().major, 1);
        assert!(Version::parse("1.2.3.4").is_err());
        assert!(Version::parse("1.2.beta").is_err());
        assert!(Version::parse("\n1.2.3").is_err());
        assert_eq!(
            Version::parse("1.2.3-beta.01"),
            Err(VersionError::LeadingZero)
        );
        assert!(Version::parse("1.2.3+build.01").is_ok());
        assert!(Version::parse("V1.2.3").is_err());
    }

    #[test]
    fn ordering_ignores_metadata_and_follows_prerelease_precedence() {
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(v("1.2.3+a"), v("1.2.3+b"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.0.0-alpha.beta") < v("1.0.0-beta.2"));
        assert!(v("1.0.0-beta.11") < v("1.0.0-rc.1"));
        assert!(v("1.0.0-rc.1") < v("1.0.0"));
    }

    #[test]
    fn seed_constraints() {
        assert!(check(">=1.0.0 <2.0.0", "v1.5.0"));
        assert!(!check(">=1.0.0 <2.0.0", "v2.0.0"));
        assert!(!check(">=1.0.0 <2.0.0", "v1.5.0-rc.1"));
        assert!(check(">=1.0.0-rc.0", "v1.5.0-rc.1"));
        assert!(check(">=1.0.0-rc.0", "v2.0.0"));
    }

    #[test]
    fn prereleases_open_the_whole_group_but_not_other_alternatives() {
        assert!(check(">=1.2.3-0 <2.0.0", "1.5.0-rc.1"));
        assert!(check(">= 1.0.0 <= 2.0.0-beta", "1.0.1-beta"));
        assert!(!check(">= 1.0.0 <= 2.0.0-beta || > 3", "3.0.1-beta"));
        assert!(!check("*", "1.2.3-alpha.1"));
        assert!(check("*-0", "1.2.3-alpha.1"));
    }

    #[test]
    fn short_and_wildcard_forms() {
        assert!(check("1.2", "1.2.9"));
        assert!(!check("1.2", "1.3.0"));
        assert!(check("<=11", "11.2.3"));
        assert!(!check(">11", "11.9.0"));
        assert!(check("1.5.0 - 4.5", "4.5.9"));
        assert!(check("~*", "2.1.1"));
        assert!(check("", "9.9.9"));
    }

    #[test]
    fn malformed_constraints_are_refused() {
        for bad in [
            "12.3.4.1234",
            "12.3.34~ 1.2.3",
            ">= bar",
            "BAR >= 1.2.3",
            "v1.2.3-beta.01",
            "1.0 ||",
            "foo",
        ] {
            assert!(Constraint::parse(bad).is_err(), "{bad} parsed");
        }
    }
}
