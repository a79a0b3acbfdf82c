//! `[registries.NAME]`: where images come from, how to reach them and how fast.

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::Spanned;

use super::{Validator, at, parse_duration};
use crate::config::credentials::CredentialRef;
use crate::config::diagnostic::{Code, Origin};
use crate::config::model::Registry;
use crate::config::raw::RawRegistry;
use crate::reference::canonical_registry;

impl Validator<'_> {
    pub(super) fn registries(
        &mut self,
        raw: &BTreeMap<String, Spanned<RawRegistry>>,
    ) -> BTreeMap<String, Registry> {
        let mut out = BTreeMap::new();
        let mut prefixes: BTreeMap<String, String> = BTreeMap::new();
        let mut default: Option<String> = None;
        for (name, reg) in raw {
            let (name, span) = (name.clone(), reg.span());
            let reg = reg.get_ref();
            let Some(prefix) = &reg.prefix else {
                self.error_hint(
                    Origin::Section(span),
                    format!("registry `{name}` has no prefix"),
                    "add prefix = \"ghcr.io\": the host its images live on",
                );
                continue;
            };
            let canonical = canonical_registry(prefix.get_ref()).to_string();
            if canonical.is_empty() || canonical.contains(char::is_whitespace) {
                self.error(
                    at(prefix),
                    format!("prefix `{}` is not a registry host", prefix.get_ref()),
                );
                continue;
            }
            if let Some(other) = prefixes.insert(canonical.clone(), name.clone()) {
                self.error(
                    at(prefix),
                    format!("registries `{other}` and `{name}` have the same prefix `{canonical}`"),
                );
            }
            let insecure = reg.insecure.as_ref().is_some_and(|b| *b.get_ref());
            let api_url = match &reg.api_url {
                Some(url) => {
                    let u = url.get_ref().trim_end_matches('/').to_string();
                    if has_userinfo(&u) {
                        self.error_hint(
                            at(url),
                            "api_url carries a user name or password",
                            "put them in `credentials` (env:, file:, docker-config or exec:), which are sent to this registry only",
                        );
                        continue;
                    }
                    if u.starts_with("http://") && !insecure {
                        self.error_hint(
                            at(url),
                            format!("api_url `{u}` is plain http"),
                            "set insecure = true for this registry if that is really intended",
                        );
                    } else if !(u.starts_with("https://") || u.starts_with("http://"))
                        || u.len() <= "https://".len()
                    {
                        self.error(at(url), format!("api_url `{u}` must start with https://"));
                    }
                    u
                }
                None if canonical == crate::reference::DOCKER_HUB => {
                    "https://registry-1.docker.io".into()
                }
                None => format!("https://{canonical}"),
            };
            let is_default = reg.default.as_ref().is_some_and(|b| *b.get_ref());
            if is_default {
                if let Some(first) = &default {
                    self.error(
                        at(reg.default.as_ref().expect("set")),
                        format!("registries `{first}` and `{name}` are both marked default"),
                    );
                }
                default = Some(name.clone());
            }
            let published = crate::config::limits::default_rate(&canonical).per_second;
            let rate_limit = match &reg.rate_limit {
                Some(r) if !(r.get_ref().is_finite() && *r.get_ref() > 0.0) => {
                    self.error(
                        at(r),
                        "rate_limit must be a positive number of requests per second",
                    );
                    published
                }
                Some(r) => *r.get_ref(),
                None => published,
            };
            let written = self.within(Code::Credentials, |v| {
                v.credentials("registries", &name, reg.credentials.as_ref())
            });
            // Unless the config says otherwise (or the entry is wrong, said above).
            let implied = (written.is_none() && reg.credentials.is_none())
                .then(|| CredentialRef::implied_by_host(&canonical))
                .flatten();
            let credentials_implied = implied.is_some();
            let credentials = written.or(implied);
            let credentials_ttl = match &reg.credentials_ttl {
                Some(t) => self
                    .parse(t, "credentials_ttl", parse_duration)
                    .unwrap_or(Registry::DEFAULT_CREDENTIALS_TTL),
                None => Registry::DEFAULT_CREDENTIALS_TTL,
            };
            out.insert(
                name.clone(),
                Registry {
                    name,
                    prefix: canonical,
                    api_url,
                    credentials,
                    credentials_implied,
                    default: is_default,
                    insecure,
                    ca_file: reg.ca_file.as_ref().map(|p| PathBuf::from(p.get_ref())),
                    rate_limit,
                    rate_limit_set: reg.rate_limit.is_some(),
                    credentials_ttl,
                },
            );
        }
        out
    }
}

/// Whether a URL names a user or password (`https://user:pw@host`): secrets belong in
/// `credentials`, never in a URL that is logged, echoed and written into git's config.
pub(super) fn has_userinfo(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.contains('@')
}
