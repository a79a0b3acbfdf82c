//! Commit message templates: `deploy({environment}): {summary}`.
//!
//! Checked when the config is loaded, so a misspelled variable is a config error with a line
//! number rather than a garbled commit message months later.

use std::collections::BTreeMap;

/// The variables a commit message may use.
pub const VARIABLES: &[&str] = &[
    "environment",
    "branch",
    "repository",
    "summary",
    "changes",
    "count",
];

/// `deploy({environment}): {summary}` then a blank line and one line per change.
pub const DEFAULT_COMMIT_MESSAGE: &str = "deploy({environment}): {summary}\n\n{changes}";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

impl Template {
    /// Parses `{name}` placeholders; `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let rest = &text[i + 1..];
                    let end = rest.find('}').ok_or_else(|| {
                        format!(
                            "`{{` at offset {i} is never closed (write `{{{{` for a literal brace)"
                        )
                    })?;
                    let name = &rest[..end];
                    if !VARIABLES.contains(&name) {
                        let hint = crate::suggest::suggest(name, VARIABLES)
                            .map(|s| format!("did you mean `{{{s}}}`? "))
                            .unwrap_or_default();
                        return Err(format!(
                            "unknown variable `{{{name}}}`: {hint}available: {}",
                            VARIABLES
                                .iter()
                                .map(|v| format!("{{{v}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var(name.to_string()));
                    for _ in 0..=end {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(format!(
                        "`}}` at offset {i} closes nothing (write `}}}}` for a literal brace)"
                    ));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The variables the template uses, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Fills the template; a variable without a value renders empty.
    pub fn render(&self, values: &BTreeMap<&str, String>) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Var(v) => values.get(v.as_str()).map_or("", String::as_str),
            })
            .collect()
    }
}

impl Default for Template {
    fn default() -> Template {
        Template::parse(DEFAULT_COMMIT_MESSAGE).expect("the default template is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_variables_and_literal_braces() {
        let t = Template::parse("deploy({environment}): {summary} {{x}}").unwrap();
        let values = BTreeMap::from([
            ("environment", "prod".to_string()),
            ("summary", "api v1.5.0".to_string()),
        ]);
        assert_eq!(t.render(&values), "deploy(prod): api v1.5.0 {x}");
    }

    #[test]
    fn unknown_variables_are_refused_with_a_hint() {
        let err = Template::parse("deploy {enviroment}").unwrap_err();
        assert!(err.contains("did you mean `{environment}`"), "{err}");
        assert!(Template::parse("open {summary").is_err());
        assert!(Template::parse("close }").is_err());
    }
}
