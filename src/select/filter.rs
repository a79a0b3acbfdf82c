//! Tag patterns for `allow_tags`, `ignore_tags` and `extract`.
//!
//! Two syntaxes, because users bring both: `regexp:` patterns, unanchored like Go's `MatchString`
//! in Argo CD Image Updater so that its annotations can be pasted unchanged (write `^` and `$` to
//! anchor), and globs (`v1.*`, optionally written `glob:v1.*`), which always match the whole tag.

use std::fmt;

use globset::{Glob, GlobMatcher};
use regex::Regex;

/// A compiled tag pattern that remembers how the user wrote it.
#[derive(Debug, Clone)]
pub struct TagPattern {
    source: String,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    Regexp(Regex),
    Glob(GlobMatcher),
}

/// Why a pattern did not compile; the message is the engine's own, shortened to one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PatternError {
    pub message: String,
}

impl TagPattern {
    pub fn parse(source: &str) -> Result<TagPattern, PatternError> {
        let matcher = if let Some(expr) = source.strip_prefix("regexp:") {
            Matcher::Regexp(compile_regex(expr)?)
        } else {
            let glob = source.strip_prefix("glob:").unwrap_or(source);
            if glob.is_empty() {
                return Err(PatternError {
                    message: "an empty pattern matches nothing".into(),
                });
            }
            Matcher::Glob(
                Glob::new(glob)
                    .map_err(|e| PatternError {
                        message: format!("invalid glob: {}", e.kind()),
                    })?
                    .compile_matcher(),
            )
        };
        Ok(TagPattern {
            source: source.to_string(),
            matcher,
        })
    }

    pub fn is_match(&self, tag: &str) -> bool {
        match &self.matcher {
            Matcher::Regexp(re) => re.is_match(tag),
            Matcher::Glob(glob) => glob.is_match(tag),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for TagPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Compiles a regular expression, turning the engine's multi-line report into one line.
pub fn compile_regex(expr: &str) -> Result<Regex, PatternError> {
    Regex::new(expr).map_err(|e| PatternError {
        message: match e {
            regex::Error::Syntax(text) => {
                // The engine draws the pattern and a caret, then "error: ..." on the last line.
                let detail = text
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("error: "))
                    .unwrap_or(&text);
                format!("invalid regexp: {detail}")
            }
            other => format!("invalid regexp: {other}"),
        },
    })
}

/// A regexp whose capture group builds the sort key from a tag, as Flux's `extract` does:
/// `main-(?P<ts>\d+)-[a-f0-9]+` sorts `main-<timestamp>-<sha>` builds by their timestamp.
#[derive(Debug, Clone)]
pub struct Extract {
    regex: Regex,
    group: usize,
}

impl Extract {
    /// The key is the first named group, or group 1 when none is named.
    pub fn parse(expr: &str) -> Result<Extract, PatternError> {
        let regex = compile_regex(expr)?;
        if regex.captures_len() < 2 {
            return Err(PatternError {
                message: "extract needs a capture group, such as `(?P<ts>\\d+)`, for the sort key"
                    .into(),
            });
        }
        let group = regex.capture_names().position(|n| n.is_some()).unwrap_or(1);
        Ok(Extract { regex, group })
    }

    pub fn key<'t>(&self, tag: &'t str) -> Option<&'t str> {
        self.regex
            .captures(tag)
            .and_then(|c| c.get(self.group))
            .map(|m| m.as_str())
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexps_are_unanchored_and_globs_match_whole_tags() {
        let re = TagPattern::parse("regexp:(-rc|-alpha|-beta)").unwrap();
        assert!(re.is_match("v1.5.0-rc.1"));
        assert!(!re.is_match("v1.5.0"));
        let glob = TagPattern::parse("v1.*").unwrap();
        assert!(glob.is_match("v1.5.0"));
        assert!(!glob.is_match("xv1.5.0"));
        assert!(
            TagPattern::parse("glob:main-*")
                .unwrap()
                .is_match("main-abc1234")
        );
    }

    #[test]
    fn bad_patterns_explain_themselves_on_one_line() {
        let err = TagPattern::parse("regexp:^v[0-9+$").unwrap_err();
        assert!(err.message.starts_with("invalid regexp: "), "{err}");
        assert!(!err.message.contains('\n'));
        assert!(TagPattern::parse("v[1").is_err());
        assert!(TagPattern::parse("").is_err());
    }

    #[test]
    fn extract_uses_the_first_named_group() {
        let ex = Extract::parse(r"^main-(?P<ts>\d+)-[a-f0-9]+$").unwrap();
        assert_eq!(ex.key("main-1700000000-abc123"), Some("1700000000"));
        assert_eq!(ex.key("dev-1"), None);
        assert!(Extract::parse("main-[0-9]+").is_err());
    }
}
