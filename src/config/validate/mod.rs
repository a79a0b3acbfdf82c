//! From the file as written ([`raw`](super::raw)) to a [`Config`] that cannot be wrong: the
//! loader's walk through the document, section by section.
//!
//! The core sections have their checks here ([`images`], [`registries`], [`repositories`],
//! [`settings`], [`environments`] and their [`pull_requests`]; notifications and credential
//! references in this file). The pluggable concerns own theirs beside their types, in
//! `config/forge.rs`, `targets.rs`, `verify.rs`, `webhooks.rs` and `cluster.rs`; all use the
//! tools of [`validator`](super::validator). A value that fails is reported and left out, and
//! checking goes on, so one run shows every problem; problems that follow only from an
//! earlier one (an image whose bad regexp was already reported) are not repeated.

use std::collections::BTreeMap;

use toml::Spanned;

mod environments;
mod images;
mod pull_requests;
mod registries;
mod repositories;
mod settings;

use super::credentials::CredentialRef;
use super::diagnostic::{Code, Diagnostic, Origin};
use super::env;
use super::model::*;
use super::raw::*;
pub(super) use super::validator::{Validator, at, parse_duration};
use crate::suggest::suggest;

impl Validator<'_> {
    pub fn config(&mut self, raw: RawConfig, source_len: usize) -> Option<Config> {
        self.within(Code::Environment, |v| v.overrides(&raw));
        let settings = self.within(Code::Settings, |v| {
            v.settings(raw.settings.as_ref(), source_len)
        });
        let registries = self.within(Code::Registries, |v| v.registries(&raw.registries));
        let repositories = self.within(Code::Repositories, |v| v.repositories(&raw.repositories));
        let environments = self.within(Code::Environments, |v| {
            v.environments(&raw.environments, &repositories, source_len)
        });
        // Images refer to environments by name; one that is declared but invalid was reported
        // already and must not also be called undefined.
        let declared: Vec<&str> = raw.environments.keys().map(String::as_str).collect();
        let mut images = BTreeMap::new();
        let mut image_spans = BTreeMap::new();
        let env_spans: BTreeMap<String, std::ops::Range<usize>> = raw
            .environments
            .iter()
            .map(|(name, env)| (name.clone(), env.span()))
            .collect();
        for (alias, image) in raw.images {
            let span = image.span();
            image_spans.insert(alias.clone(), span.clone());
            let image = self.within(Code::Images, |v| {
                v.image(
                    &alias,
                    image.into_inner(),
                    span,
                    &registries,
                    &declared,
                    &settings,
                )
            });
            if let Some(image) = image {
                images.insert(alias, image);
            }
        }
        // Charts share the images' aliases: holds, `status` and the state name them alike.
        for (alias, chart) in raw.charts {
            let span = chart.span();
            if image_spans.contains_key(&alias) {
                self.within(Code::Charts, |v| {
                    v.error_hint(
                        Origin::Section(span.clone()),
                        format!("`{alias}` is both an image and a chart"),
                        "give the chart its own name: holds, status and the state name each by it",
                    )
                });
                continue;
            }
            image_spans.insert(alias.clone(), span.clone());
            let chart = self.within(Code::Charts, |v| {
                v.chart(
                    &alias,
                    chart.into_inner(),
                    span,
                    &registries,
                    &declared,
                    &settings,
                )
            });
            if let Some(chart) = chart {
                images.insert(alias, chart);
            }
        }
        if !images.is_empty() && environments.is_empty() && raw.environments.is_empty() {
            self.within(Code::Environments, |v| {
                v.error_hint(
                    Origin::Section(0..0),
                    "images are configured but no environment is",
                    "add an [environments.NAME] table with the branch to write to",
                )
            });
        }
        let webhooks = raw
            .webhooks
            .as_ref()
            .and_then(|w| self.within(Code::Webhooks, |v| v.webhooks(w)));
        let notifications =
            self.within(Code::Notifications, |v| v.notifications(&raw.notifications));
        let cluster = raw.cluster.as_ref().and_then(|c| {
            let urls: Vec<&str> = repositories.values().map(|r| r.url.as_str()).collect();
            self.within(Code::Cluster, |v| v.cluster(c, &urls))
        });
        let ui = raw
            .ui
            .as_ref()
            .and_then(|u| self.within(Code::Ui, |v| v.ui(u)));
        let config = Config {
            settings,
            registries,
            repositories,
            environments,
            images,
            webhooks,
            notifications,
            cluster,
            ui,
        };
        self.within(Code::PullRequests, |v| {
            v.write_modes(&config, &image_spans, &env_spans)
        });
        self.diagnostics.is_empty().then_some(config)
    }

    fn notifications(
        &mut self,
        raw: &BTreeMap<String, Spanned<RawNotification>>,
    ) -> BTreeMap<String, Notification> {
        let mut out = BTreeMap::new();
        for (name, n) in raw {
            let span = n.span();
            let n = n.get_ref();
            let url = match &n.url {
                Some(u)
                    if u.get_ref().starts_with("https://")
                        || u.get_ref().starts_with("http://") =>
                {
                    Some(NotificationUrl::Plain(u.get_ref().clone()))
                }
                Some(u) => self
                    .parse(u, "url", |t| {
                        CredentialRef::parse(t).map_err(|e| {
                            format!(
                                "`{t}` is neither an http(s) URL nor a credential reference ({e})"
                            )
                        })
                    })
                    .map(NotificationUrl::Secret),
                None => {
                    self.error(
                        Origin::Section(span),
                        format!("notification `{name}` has no url"),
                    );
                    None
                }
            };
            let format = match &n.format {
                Some(f) => self.parse(f, "format", |t| match t {
                    "json" => Ok(NotificationFormat::Json),
                    "slack" => Ok(NotificationFormat::Slack),
                    other => Err(format!("`{other}`: expected \"json\" or \"slack\"")),
                }),
                None => Some(NotificationFormat::Json),
            };
            let credentials = match &n.credentials {
                Some(c) => match self.parse(c, "credentials", CredentialRef::parse) {
                    Some(c) => Some(c),
                    None => continue,
                },
                None => None,
            };
            if let (Some(url), Some(format)) = (url, format) {
                out.insert(
                    name.clone(),
                    Notification {
                        name: name.clone(),
                        url,
                        format,
                        credentials,
                    },
                );
            }
        }
        out
    }

    /// Environment overrides must name a setting that exists, or a registry or repository the
    /// file defines: a misspelled variable silently doing nothing is how outages start.
    fn overrides(&mut self, raw: &RawConfig) {
        let overlay = self.overlay;
        for key in overlay.values.settings.keys() {
            if !keys::SETTINGS.contains(&key.as_str()) {
                let hint = suggest(key, keys::SETTINGS)
                    .map(|s| format!("did you mean {}?", env::var_name(&["settings", s])));
                self.push(
                    Diagnostic::new(
                        format!("unknown setting `{key}`"),
                        Origin::Env(env::var_name(&["settings", key])),
                    )
                    .with_maybe_hint(hint),
                );
            }
        }
        let sections = [
            (
                "registries",
                overlay.values.registries.keys().collect::<Vec<_>>(),
                raw.registries
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
            ),
            (
                "repositories",
                overlay.values.repositories.keys().collect(),
                raw.repositories.keys().map(String::as_str).collect(),
            ),
        ];
        for (section, overridden, defined) in sections {
            for name in overridden
                .into_iter()
                .filter(|n| !defined.contains(&n.as_str()))
            {
                let singular = section.trim_end_matches("ies").to_string() + "y";
                self.error_hint(
                    Origin::Env(env::var_name(&[section, name, "credentials"])),
                    format!("{singular} `{name}` is not defined in the file"),
                    format!("define [{section}.{name}] in the file; the environment only overrides credentials"),
                );
            }
        }
    }

    /// A credential reference from the environment override or the file.
    fn credentials(
        &mut self,
        section: &str,
        name: &str,
        file: Option<&Spanned<String>>,
    ) -> Option<CredentialRef> {
        let value = match section {
            "registries" => self.overlay.values.registries.get(name),
            _ => self.overlay.values.repositories.get(name),
        }
        .and_then(|s| s.credentials.as_ref())
        .map(env::as_string)?;
        let origin = self
            .overlay
            .env_origin(&[section, name, "credentials"])
            .or_else(|| file.map(at))
            .unwrap_or(Origin::Section(0..0));
        match CredentialRef::parse(&value) {
            Ok(c) => Some(c),
            Err(e) => {
                self.error(origin, format!("credentials: {e}"));
                None
            }
        }
    }
}

/// Branch names git would accept (the rules of `git check-ref-format` that matter in practice).
fn check_branch(name: &str) -> Result<String, String> {
    let bad = name.is_empty()
        || name.starts_with(['-', '/'])
        || name.ends_with(['/', '.'])
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name.split('/').any(|c| c.starts_with('.'))
        || name
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c));
    if bad {
        Err(format!("`{name}` is not a valid branch name"))
    } else {
        Ok(name.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names() {
        for ok in ["deploy/prod", "main", "release-1.2"] {
            assert!(check_branch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "deploy prod",
            "-x",
            "a..b",
            "a/",
            "x.lock",
            "a/.b",
            "a:b",
            "a@{1}",
        ] {
            assert!(check_branch(bad).is_err(), "{bad}");
        }
    }
}
