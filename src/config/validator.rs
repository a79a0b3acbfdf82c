//! The validator's own tools, shared by every section's checks: where a value was written,
//! reporting under the code of the concern being checked, and parsing a spanned value. Below
//! the sections and the loader alike, so each section's file can use them without importing
//! the loader that calls it.

use std::time::Duration;

use toml::Spanned;

use super::diagnostic::{Code, Diagnostic, Origin};
use super::env::Overlay;

/// A string as written, with where.
pub type Str = Spanned<String>;

pub(super) struct Validator<'a> {
    pub(super) overlay: &'a Overlay,
    pub diagnostics: Vec<Diagnostic>,
    /// The concern being checked: the code of what is reported now.
    code: Code,
}

pub(super) fn at<T>(value: &Spanned<T>) -> Origin {
    Origin::File(value.span())
}

impl<'a> Validator<'a> {
    pub fn new(overlay: &'a Overlay) -> Validator<'a> {
        Validator {
            overlay,
            diagnostics: Vec::new(),
            code: Code::Syntax,
        }
    }

    /// Runs `check` as the concern `code`: what it reports carries that code.
    pub(super) fn within<T>(&mut self, code: Code, check: impl FnOnce(&mut Self) -> T) -> T {
        let outer = std::mem::replace(&mut self.code, code);
        let checked = check(self);
        self.code = outer;
        checked
    }

    /// Reports `diagnostic` under the concern being checked.
    pub(super) fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic.with_code(self.code));
    }

    pub(super) fn error(&mut self, origin: Origin, message: impl Into<String>) {
        self.push(Diagnostic::new(message, origin));
    }

    pub(super) fn error_hint(
        &mut self,
        origin: Origin,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(Diagnostic::new(message, origin).with_hint(hint));
    }

    /// Runs `parse` on a spanned string, reporting its error at the value.
    pub(super) fn parse<T>(
        &mut self,
        value: &Spanned<String>,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(value.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(at(value), format!("{what}: {e}"));
                None
            }
        }
    }

    /// A file the daemon reads: an absolute path (its working directory is `/` under systemd).
    pub(super) fn absolute_path(
        &mut self,
        value: &Spanned<String>,
        what: &str,
    ) -> Option<std::path::PathBuf> {
        self.parse(value, what, |t| {
            let p = std::path::PathBuf::from(t);
            if p.is_absolute() {
                Ok(p)
            } else {
                Err(format!("`{t}` is not an absolute path"))
            }
        })
    }
}

/// Durations as people write them: `90s`, `5m`, `1h30m`, `24h`, `2d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let not_a_duration =
        || format!("`{text}` is not a duration: write it like 30s, 5m, 1h30m, 24h or 2d");
    // A day is 24 hours here: an interval or an age is elapsed time, not calendar time.
    let span = text
        .parse::<jiff::Span>()
        .ok()
        .and_then(|s| {
            s.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                .ok()
        })
        .ok_or_else(not_a_duration)?;
    if span.is_negative() || span.is_zero() {
        return Err(format!("`{text}` must be longer than zero"));
    }
    span.try_into()
        .map_err(|_| format!("`{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("PT5M"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("300").is_err());
    }
}
