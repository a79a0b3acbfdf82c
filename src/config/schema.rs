//! A JSON Schema of `updater.toml`, for editors: taplo and Even Better TOML complete keys,
//! show their documentation and flag a misspelled key while the file is written.
//!
//! It is generated from the types the loader reads the file into ([`super::raw`]), so it
//! cannot name a key the loader does not know, and every table refuses keys it does not list.
//! Each key's description is its row in `docs/configuration.md`, so the editor shows what
//! the reference says.

use serde_json::Value;

use super::raw::RawConfig;

/// The reference documentation the descriptions come from.
const REFERENCE: &str = include_str!("../../docs/configuration.md");

/// The schema's definition for each documented section of the reference.
const SECTIONS: &[(&str, &[&str])] = &[
    ("## `[settings]`", &["RawSettings"]),
    ("## `[registries.NAME]`", &["RawRegistry"]),
    ("## `[repositories.NAME]`", &["RawRepository"]),
    ("## `[environments.NAME]`", &["RawEnvironment"]),
    ("## `[images.ALIAS]`", &["RawImage"]),
    ("### Policy keys", &["RawImage", "RawPolicy"]),
    ("### Deploy-safety keys", &["RawImage", "RawPolicy"]),
    ("## `[charts.NAME]`", &["RawImage"]),
    ("## `[webhooks]`", &["RawWebhooks"]),
    ("## `[notifications.NAME]`", &["RawNotification"]),
    ("## `[ui]`", &["RawUi"]),
];

/// A documented key: its section's definitions, its name, and its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documented {
    pub definitions: &'static [&'static str],
    pub key: String,
    pub description: String,
}

/// Every key the reference documents in a table, by section.
pub fn documented() -> Vec<Documented> {
    let mut out = Vec::new();
    let mut section: Option<&'static [&'static str]> = None;
    // Only tables headed `| key | type | default | meaning |` list keys.
    let mut keys_table = false;
    for line in REFERENCE.lines() {
        if !line.starts_with('|') {
            keys_table = false;
        } else if line.starts_with("| key | type | default | meaning |") {
            keys_table = true;
            continue;
        }
        if line.starts_with('#') {
            section = SECTIONS
                .iter()
                .find(|(heading, _)| line.trim_end() == *heading)
                .map(|(_, defs)| *defs)
                .or_else(|| {
                    // A subsection of a section keeps it; a new section ends it.
                    if line.starts_with("### ") {
                        section
                    } else {
                        None
                    }
                });
            continue;
        }
        let Some(definitions) = section.filter(|_| keys_table) else {
            continue;
        };
        let cells: Vec<&str> = line
            .split(" | ")
            .map(|c| c.trim_matches(|ch| ch == '|' || ch == ' '))
            .collect();
        let [key, kind, default, meaning] = cells.as_slice() else {
            continue;
        };
        let Some(key) = key.strip_prefix('`').and_then(|k| k.strip_suffix('`')) else {
            continue;
        };
        let text = |s: &str| s.replace('`', "").replace("\\|", "|");
        let default = match text(default) {
            d if d == "required" => "required".to_string(),
            d => format!("default: {d}"),
        };
        out.push(Documented {
            definitions,
            key: key.to_string(),
            description: format!("{} ({}; {default})", text(meaning), text(kind)),
        });
    }
    out
}

/// The schema, as JSON.
pub fn schema() -> Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(RawConfig)).expect("a schema is JSON");
    if let Value::Object(root) = &mut schema {
        root.insert(
            "title".into(),
            Value::String("image-updater configuration (updater.toml)".into()),
        );
        root.insert(
            "$id".into(),
            Value::String("https://image-updater.invalid/updater.schema.json".into()),
        );
    }
    for doc in documented() {
        for definition in doc.definitions {
            let property = &mut schema["$defs"][*definition]["properties"][&doc.key];
            if let Value::Object(p) = property
                && !p.contains_key("description")
            {
                p.insert("description".into(), Value::String(doc.description.clone()));
            }
        }
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_key_is_in_the_schema_with_its_description() {
        let schema = schema();
        let docs = documented();
        assert!(docs.len() > 40, "{}", docs.len());
        for doc in &docs {
            for definition in doc.definitions {
                let property = &schema["$defs"][*definition]["properties"][&doc.key];
                assert!(
                    property.is_object(),
                    "documented key `{}` is not in {definition}",
                    doc.key
                );
                assert!(
                    property["description"].as_str().is_some(),
                    "`{}` has no description",
                    doc.key
                );
            }
        }
        // Tables refuse keys they do not list, so an editor flags a misspelling.
        assert_eq!(schema["$defs"]["RawImage"]["additionalProperties"], false);
        assert_eq!(schema["additionalProperties"], false);
    }
}
