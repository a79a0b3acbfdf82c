//! Config diagnostics: what is wrong, where (file:line:col or the environment variable), the
//! offending text, and a hint.
//!
//! Every problem in a file is collected and reported at once, so that a user fixing a config
//! does not have to run `check` once per mistake.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A byte range in the config file.
    File(Range<usize>),
    /// An `IMAGE_UPDATER_*` environment variable.
    Env(String),
    /// Not written anywhere: the problem is about something missing from a section.
    Section(Range<usize>),
}

/// A diagnostic's stable code: the concern whose rule it is, so that a message can be looked
/// up in docs/configuration.md and searched for whatever its words become. Codes are never
/// reused for another concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    /// The file cannot be read.
    Unreadable = 1,
    /// Not TOML, or a value of the wrong type.
    Syntax = 2,
    /// A key image-updater does not know.
    UnknownKey = 3,
    /// An `IMAGE_UPDATER_*` environment variable.
    Environment = 4,
    /// `[settings]`.
    Settings = 100,
    /// `[registries.NAME]`.
    Registries = 200,
    /// `[repositories.NAME]`.
    Repositories = 300,
    /// `[repositories.NAME.forge]`.
    Forges = 310,
    /// `[environments.NAME]`.
    Environments = 400,
    /// `[environments.NAME.pull_request]` and the write modes.
    PullRequests = 410,
    /// An environment's deploy `windows`, `freeze` periods and `freeze_file`.
    Windows = 420,
    /// `[images.ALIAS]`: the image, its policy and its safety rules.
    Images = 500,
    /// `[[images.ALIAS.targets]]`.
    Targets = 510,
    /// `verify` rules.
    Verification = 520,
    /// `[charts.NAME]`: a Helm chart, where it is published, its policy.
    Charts = 530,
    /// `[webhooks]`.
    Webhooks = 600,
    /// `[ui]`: the status page.
    Ui = 650,
    /// `[notifications]`.
    Notifications = 700,
    /// `[cluster]`.
    Cluster = 800,
    /// A credentials reference (`env:`, `file:`, `exec:`), in whatever section.
    Credentials = 900,
    /// A registry's configured intervals need more requests than its rate limit allows.
    Budget = 1000,
    /// A credentials variable (`env:NAME`) is not set where `check` runs.
    Unset = 1010,
    /// A keyless rule's trusted root cannot be read when checked.
    TrustedRoot = 1020,
    /// A registry signs in with a cloud's credentials, and none are found where `check` runs.
    Cloud = 1030,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IU{:04}", *self as u16)
    }
}

/// Whether a problem stops the config from loading (an error), or is said and the config
/// loads (a warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub origin: Origin,
    pub hint: Option<String>,
}

/// A warning about a config that loads, as `check` prints it: `warning[IU1000]: ...`.
pub fn warning(code: Code, message: &str) -> String {
    format!("{}[{code}]: {}", Severity::Warning, mask_userinfo(message))
}

impl Diagnostic {
    /// A problem with the file as a whole; the validator stamps the code of the section it
    /// is in (see [`Diagnostic::with_code`]).
    pub fn new(message: impl Into<String>, origin: Origin) -> Diagnostic {
        Diagnostic {
            code: Code::Syntax,
            message: message.into(),
            origin,
            hint: None,
        }
    }

    pub fn with_code(mut self, code: Code) -> Diagnostic {
        self.code = code;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_maybe_hint(mut self, hint: Option<String>) -> Diagnostic {
        self.hint = hint;
        self
    }
}

/// All problems found in one config file, with the source needed to point into it.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub path: PathBuf,
    pub source: String,
    pub items: Vec<Diagnostic>,
}

/// A position in the file, 1-based as editors count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCol {
    pub line: usize,
    pub col: usize,
}

/// The 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> LineCol {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    LineCol {
        line,
        col: before[line_start..].chars().count() + 1,
    }
}

impl Diagnostics {
    pub fn new(path: &Path, source: &str) -> Diagnostics {
        Diagnostics {
            path: path.to_path_buf(),
            source: source.to_string(),
            items: Vec::new(),
        }
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Where a diagnostic points, as `file:line:col` or `environment variable NAME`.
    pub fn location(&self, diagnostic: &Diagnostic) -> String {
        match &diagnostic.origin {
            Origin::File(span) | Origin::Section(span) => {
                let at = line_col(&self.source, span.start);
                format!("{}:{}:{}", self.path.display(), at.line, at.col)
            }
            Origin::Env(var) => format!("environment variable {var}"),
        }
    }

    /// Sorts by position in the file, environment variables last, so the report reads top down;
    /// drops repeats (a target shared by three environments is wrong once, not three times).
    pub fn sort(&mut self) {
        self.items.sort_by_key(|d| match &d.origin {
            Origin::File(s) | Origin::Section(s) => (0, s.start, String::new()),
            Origin::Env(v) => (1, 0, v.clone()),
        });
        self.items.dedup();
    }
}

impl fmt::Display for Diagnostics {
    /// Renders each problem the way compilers do: the message, the location, the line with the
    /// offending text underlined, and the hint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(
                f,
                "{}[{}]: {}",
                Severity::Error,
                d.code,
                mask_userinfo(&d.message)
            )?;
            writeln!(f, "  --> {}", self.location(d))?;
            if let Origin::File(span) | Origin::Section(span) = &d.origin {
                let at = line_col(&self.source, span.start);
                let text = mask_userinfo(self.source.lines().nth(at.line - 1).unwrap_or(""));
                let text = text.as_str();
                let gutter = at.line.to_string().len();
                let width = if matches!(d.origin, Origin::Section(_)) {
                    1
                } else {
                    // Underline the span, or to the end of the line when it runs further.
                    let on_line = text.chars().count().saturating_sub(at.col - 1);
                    self.source[span.start..span.end.min(self.source.len())]
                        .chars()
                        .count()
                        .clamp(1, on_line.max(1))
                };
                writeln!(f, "{:gutter$} |", "")?;
                writeln!(f, "{} | {}", at.line, text)?;
                writeln!(
                    f,
                    "{:gutter$} | {}{}",
                    "",
                    " ".repeat(at.col - 1),
                    "^".repeat(width)
                )?;
            }
            if let Some(hint) = &d.hint {
                writeln!(f, "  = help: {}", mask_userinfo(hint))?;
            }
        }
        let n = self.items.len();
        write!(
            f,
            "\n{} error{} in {}",
            n,
            if n == 1 { "" } else { "s" },
            self.path.display()
        )
    }
}

/// `line` with the user and password of any URL in it (`https://bot:pw@host`) replaced by as
/// many asterisks, so a report never repeats a secret and its underline stays in place.
pub fn mask_userinfo(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let authority_end = after
            .find(['/', '?', '#', '"', '\'', ' ', '`'])
            .unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(at) => {
                out.extend(std::iter::repeat_n('*', after[..at].chars().count()));
                rest = &after[at..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked_in_reports() {
        assert_eq!(
            mask_userinfo(r#"url = "https://bot:pw@h/r.git" # and ssh://git@h/x"#),
            r#"url = "https://******@h/r.git" # and ssh://***@h/x"#
        );
        assert_eq!(mask_userinfo("no url here"), "no url here");
    }

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let src = "a = 1\nké = \"x\"\n";
        assert_eq!(line_col(src, 0), LineCol { line: 1, col: 1 });
        let at = src.find('=').unwrap();
        assert_eq!(line_col(src, at), LineCol { line: 1, col: 3 });
        let second = src.rfind('=').unwrap();
        assert_eq!(line_col(src, second), LineCol { line: 2, col: 4 });
    }

    #[test]
    fn rendering_points_at_the_text() {
        let src = "[images.api]\nstrategyy = \"semver\"\n";
        let mut d = Diagnostics::new(Path::new("updater.toml"), src);
        let start = src.find("strategyy").unwrap();
        d.push(
            Diagnostic::new("unknown key `strategyy`", Origin::File(start..start + 9))
                .with_hint("did you mean `strategy`?"),
        );
        let text = d.to_string();
        assert!(text.contains("--> updater.toml:2:1"), "{text}");
        assert!(text.contains("2 | strategyy = \"semver\""), "{text}");
        assert!(text.contains("  | ^^^^^^^^^\n"), "{text}");
        assert!(text.contains("= help: did you mean `strategy`?"), "{text}");
        assert!(text.ends_with("1 error in updater.toml"), "{text}");
    }
}
