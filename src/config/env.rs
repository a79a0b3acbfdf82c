//! `IMAGE_UPDATER_*` environment overrides, layered with figment: built-in defaults, then the
//! file, then the environment.
//!
//! Only settings and credential references can be overridden (`IMAGE_UPDATER_SETTINGS__LOG_LEVEL`,
//! `IMAGE_UPDATER_REGISTRIES__GHCR__CREDENTIALS`): that is what differs between a laptop, CI and
//! a container, while the images and their rules stay in the reviewed file. figment's own type
//! errors lose line numbers, so the file is parsed by toml first and handed to figment as plain
//! values; figment then tells us which layer supplied each value, and diagnostics point at the
//! file line or name the environment variable.

use std::collections::BTreeMap;

use figment::Figment;
use figment::providers::{Env, Serialized};
use figment::value::Value;
use serde::{Deserialize, Serialize};

use super::diagnostic::{Diagnostic, Origin};

pub const PREFIX: &str = "IMAGE_UPDATER_";

/// The overridable values, as plain strings.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layered {
    #[serde(default)]
    pub settings: BTreeMap<String, Value>,
    #[serde(default)]
    pub registries: BTreeMap<String, Secret>,
    #[serde(default)]
    pub repositories: BTreeMap<String, Secret>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Value>,
}

/// The merged values and, for each, whether it came from the environment.
pub struct Overlay {
    figment: Figment,
    pub values: Layered,
}

/// The environment variable that sets the value at `keys`.
pub fn var_name(keys: &[&str]) -> String {
    format!("{PREFIX}{}", keys.join("__").to_ascii_uppercase())
}

impl Overlay {
    /// Layers `defaults`, then `file`, then the process's `IMAGE_UPDATER_*` variables.
    pub fn build(defaults: &Layered, file: &Layered) -> Result<Overlay, Vec<Diagnostic>> {
        // Only nested keys of the overridable sections: IMAGE_UPDATER_CONFIG and the like belong
        // to the command line. The filter sees keys after `__` became `.`.
        let env = Env::prefixed(PREFIX).split("__").filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            ["settings.", "registries.", "repositories."]
                .iter()
                .any(|section| key.starts_with(section))
        });
        let figment = Figment::new()
            .merge(Serialized::defaults(defaults))
            .merge(Serialized::defaults(file))
            .merge(env);
        let values: Layered = figment.extract().map_err(|errors| {
            errors
                .into_iter()
                .map(|e| {
                    let keys: Vec<&str> = e.path.iter().map(String::as_str).collect();
                    Diagnostic::new(format!("{}", e.kind), Origin::Env(var_name(&keys)))
                        .with_code(super::diagnostic::Code::Environment)
                        .with_hint(
                        "environment overrides may set `settings` keys and the `credentials` of \
                         registries and repositories defined in the file",
                    )
                })
                .collect::<Vec<_>>()
        })?;
        Ok(Overlay { figment, values })
    }

    /// The environment variable that supplied `keys`, if the value came from the environment.
    pub fn env_origin(&self, keys: &[&str]) -> Option<Origin> {
        let md = self.figment.find_metadata(&keys.join("."))?;
        md.name
            .contains("environment")
            .then(|| Origin::Env(var_name(keys)))
    }
}

/// A figment value as the string the config would have held.
pub fn as_string(value: &Value) -> String {
    match value {
        Value::String(_, s) => s.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => match (n.to_u128(), n.to_i128()) {
            (Some(u), _) => u.to_string(),
            (None, Some(i)) => i.to_string(),
            (None, None) => n.to_f64().map(|f| f.to_string()).unwrap_or_default(),
        },
        other => format!("{other:?}"),
    }
}
