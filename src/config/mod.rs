//! `updater.toml`: read, checked, and turned into a [`Config`].
//!
//! Loading happens in stages, each owning its diagnostics: TOML syntax and types (toml's own
//! errors, with line and column), unknown keys (all of them, with a suggestion), environment
//! overrides (figment), then meaning (regexps compile, constraints parse, references resolve).
//! The result is either a valid [`Config`] or every problem found, never a half-valid config.

mod charts;
mod cluster;
pub mod credentials;
pub mod diagnostic;
mod env;
mod forge;
pub mod limits;
pub mod model;
mod raw;
pub mod schema;
mod targets;
pub mod template;
pub mod ui;
mod validate;
mod validator;
mod verify;
mod webhooks;
pub mod windows;

use std::ops::Range;
use std::path::Path;

pub use cluster::{Cluster, ClusterTls};
pub use credentials::CredentialRef;
pub use diagnostic::{Diagnostic, Diagnostics, Origin};
pub use forge::{Forge, ForgeAuth, ForgeKind};
pub use model::*;
pub use targets::{ChartTarget, ImagePaths, Marker, Segment, Target, ValuePath};
pub use ui::Ui;
pub use validator::parse_duration;
pub use verify::{AttestationRule, Keyless, Verification};
pub use webhooks::{WebhookTls, Webhooks};

use env::{Layered, Overlay, Secret};
use raw::{RawConfig, keys};

/// Reads and validates the config at `path`.
pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        let mut d = Diagnostics::new(path, "");
        d.push(
            Diagnostic::new(
                format!("cannot read {}: {e}", path.display()),
                Origin::Env(String::new()),
            )
            .with_code(diagnostic::Code::Unreadable),
        );
        d
    })?;
    from_source(path, &source)
}

/// The config in `source`, the text of the file at `path`: validated, with relative paths
/// taken from the file's directory.
pub fn from_source(path: &Path, source: &str) -> Result<Config, Diagnostics> {
    let mut config = parse(path, source)?;
    relative_to_the_file(&mut config, path);
    Ok(config)
}

/// Paths in the config are relative to the config file's directory, not to wherever the
/// command happens to run: `state_dir = "state"` beside `updater.toml` is the same directory
/// for the daemon, `status` and `hold`.
fn relative_to_the_file(config: &mut Config, file: &Path) {
    let dir = std::path::absolute(file)
        .ok()
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let rebase = |p: &mut std::path::PathBuf| {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    };
    rebase(&mut config.settings.state_dir);
    for r in config.registries.values_mut() {
        if let Some(ca) = &mut r.ca_file {
            rebase(ca);
        }
    }
    for r in config.repositories.values_mut() {
        for p in [&mut r.ssh_key, &mut r.known_hosts, &mut r.signing_key]
            .into_iter()
            .flatten()
        {
            rebase(p);
        }
    }
}

/// Validates config text; `path` only names the file in diagnostics.
pub fn parse(path: &Path, source: &str) -> Result<Config, Diagnostics> {
    let mut diagnostics = Diagnostics::new(path, source);
    let mut unknown = Vec::new();
    let deserializer = match toml::de::Deserializer::parse(source) {
        Ok(d) => d,
        Err(e) => {
            diagnostics.push(toml_diagnostic(&e));
            return Err(diagnostics);
        }
    };
    let raw: RawConfig =
        match serde_ignored::deserialize(deserializer, |p| unknown.push(path_segments(&p))) {
            Ok(raw) => raw,
            Err(e) => {
                diagnostics.push(toml_diagnostic(&e));
                return Err(diagnostics);
            }
        };
    for segments in unknown {
        diagnostics.push(unknown_key(source, &segments));
    }
    let overlay = match Overlay::build(&Layered::default(), &file_layer(&raw)) {
        Ok(o) => o,
        Err(items) => {
            diagnostics.items.extend(items);
            diagnostics.sort();
            return Err(diagnostics);
        }
    };
    let mut validator = validate::Validator::new(&overlay);
    let config = validator.config(raw, source.len());
    diagnostics.items.extend(validator.diagnostics);
    diagnostics.sort();
    match config {
        Some(config) if diagnostics.is_empty() => Ok(config),
        _ => Err(diagnostics),
    }
}

/// The overridable values as the file has them, for figment to layer the environment over.
fn file_layer(raw: &RawConfig) -> Layered {
    let mut layer = Layered::default();
    if let Some(s) = &raw.settings {
        let s = s.get_ref();
        for (key, value) in [
            ("state_dir", &s.state_dir),
            ("interval", &s.interval),
            ("log_level", &s.log_level),
            ("log_format", &s.log_format),
            ("listen", &s.listen),
        ] {
            if let Some(v) = value {
                layer
                    .settings
                    .insert(key.to_string(), v.get_ref().clone().into());
            }
        }
        if let Some(n) = &s.unhealthy_after {
            layer
                .settings
                .insert("unhealthy_after".into(), (*n.get_ref()).into());
        }
    }
    let secret = |c: &Option<toml::Spanned<String>>| Secret {
        credentials: c.as_ref().map(|c| c.get_ref().clone().into()),
    };
    for (name, r) in &raw.registries {
        layer
            .registries
            .insert(name.clone(), secret(&r.get_ref().credentials));
    }
    for (name, r) in &raw.repositories {
        layer
            .repositories
            .insert(name.clone(), secret(&r.get_ref().credentials));
    }
    layer
}

fn toml_diagnostic(e: &toml::de::Error) -> Diagnostic {
    let message = e.message().trim_end().to_string();
    Diagnostic::new(message, Origin::File(e.span().unwrap_or(0..0)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TomlStep {
    Key(String),
    Index(usize),
}

fn path_segments(path: &serde_ignored::Path<'_>) -> Vec<TomlStep> {
    use serde_ignored::Path as P;
    let mut out = match path {
        P::Root => return Vec::new(),
        P::Seq { parent, .. }
        | P::Map { parent, .. }
        | P::Some { parent }
        | P::NewtypeStruct { parent }
        | P::NewtypeVariant { parent } => path_segments(parent),
    };
    match path {
        P::Seq { index, .. } => out.push(TomlStep::Index(*index)),
        // A `Spanned` value is a map with one private key; it is not a level of the document.
        P::Map { key, .. } if key.starts_with("$__serde_spanned_private") => {}
        P::Map { key, .. } => out.push(TomlStep::Key(key.clone())),
        _ => {}
    }
    out
}

/// The keys a table at `path` accepts.
fn expected_keys(path: &[TomlStep]) -> Vec<&'static str> {
    use TomlStep::{Index, Key};
    fn key(s: &TomlStep) -> Option<&str> {
        match s {
            Key(k) => Some(k.as_str()),
            Index(_) => None,
        }
    }
    let shape: Vec<Option<&str>> = path.iter().map(key).collect();
    match shape.as_slice() {
        [] => keys::TOP.to_vec(),
        [Some("settings")] => keys::SETTINGS.to_vec(),
        [Some("registries"), _] => keys::REGISTRY.to_vec(),
        [Some("repositories"), _] => keys::REPOSITORY.to_vec(),
        [Some("repositories"), _, Some("forge")] => keys::FORGE.to_vec(),
        [Some("environments"), _] => keys::ENVIRONMENT.to_vec(),
        [Some("environments"), _, Some("pull_request")] => keys::PULL_REQUEST.to_vec(),
        [Some("environments"), _, Some("freeze"), None] => keys::FREEZE.to_vec(),
        [Some("webhooks")] => keys::WEBHOOKS.to_vec(),
        [Some("ui")] => keys::UI.to_vec(),
        [Some("cluster")] => keys::CLUSTER.to_vec(),
        [Some("notifications"), _] => keys::NOTIFICATION.to_vec(),
        [Some("images"), _] => [keys::IMAGE_ONLY, keys::POLICY].concat(),
        [Some("charts"), _] => [keys::CHART_ONLY, keys::POLICY].concat(),
        [Some("images" | "charts"), _, Some("env"), _] => keys::POLICY.to_vec(),
        [Some("images" | "charts"), _, Some("verify")]
        | [Some("images" | "charts"), _, Some("env"), _, Some("verify")] => keys::VERIFY.to_vec(),
        [
            Some("images" | "charts"),
            _,
            Some("verify"),
            Some("attestation"),
        ]
        | [
            Some("images" | "charts"),
            _,
            Some("env"),
            _,
            Some("verify"),
            Some("attestation"),
        ] => keys::ATTESTATION.to_vec(),
        [Some("images" | "charts"), _, Some("targets"), None]
        | [
            Some("images" | "charts"),
            _,
            Some("env"),
            _,
            Some("targets"),
            None,
        ] => keys::TARGET.to_vec(),
        _ => Vec::new(),
    }
}

fn unknown_key(source: &str, segments: &[TomlStep]) -> Diagnostic {
    let (key, parent) = match segments.split_last() {
        Some((TomlStep::Key(k), parent)) => (k.clone(), parent),
        _ => (String::new(), segments),
    };
    let table = parent
        .iter()
        .map(|s| match s {
            TomlStep::Key(k) => k.clone(),
            TomlStep::Index(i) => format!("[{i}]"),
        })
        .collect::<Vec<_>>()
        .join(".")
        .replace(".[", "[");
    let expected = expected_keys(parent);
    let hint = match crate::suggest::suggest(&key, &expected) {
        Some(s) => Some(format!("did you mean `{s}`?")),
        None if !expected.is_empty() => Some(format!("expected one of: {}", expected.join(", "))),
        None => None,
    };
    let location = if table.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in [{table}]")
    };
    Diagnostic::new(
        format!("unknown key `{key}` {location}"),
        Origin::File(key_span(source, segments).unwrap_or(0..0)),
    )
    .with_code(diagnostic::Code::UnknownKey)
    .with_maybe_hint(hint)
}

/// Finds where a key is written, by walking the document with spans.
fn key_span(source: &str, segments: &[TomlStep]) -> Option<Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(source).ok()?;
    let mut table = doc.get_ref();
    let mut found = None;
    let mut rest = segments;
    while let Some((segment, tail)) = rest.split_first() {
        let TomlStep::Key(key) = segment else {
            return found;
        };
        let (k, v) = table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key.as_str())?;
        found = Some(k.span());
        let mut value = v.get_ref();
        rest = tail;
        while let (DeValue::Array(items), Some((TomlStep::Index(i), tail))) =
            (value, rest.split_first())
        {
            value = items.get(*i)?.get_ref();
            rest = tail;
        }
        match value {
            DeValue::Table(t) => table = t,
            _ => return found,
        }
    }
    found
}
