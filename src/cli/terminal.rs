//! Text for a terminal. Tags, reasons and errors come from registries, and a registry can put
//! escape sequences in a tag name (ESC, NUL, BEL): printed raw they would move the cursor,
//! retitle the window or hide lines. Control characters are shown escaped instead.

use std::borrow::Cow;

/// `text` with every control character but the newline written as an escape (`\u{1b}`).
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() && c != '\n' {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_not_sent() {
        assert_eq!(safe("v1.2.3"), "v1.2.3");
        assert_eq!(safe("v1\u{1b}[2J\u{0}"), "v1\\u{1b}[2J\\u{0}");
        assert_eq!(safe("a\nb"), "a\nb");
    }
}
