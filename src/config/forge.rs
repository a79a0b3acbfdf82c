//! `[repositories.NAME.forge]`: which forge API pull requests are opened through, for which
//! project, and how image-updater signs in to it. Without the table, a repository on
//! github.com, gitlab.com or codeberg.org is known from its url.
//!
//! The section as written ([`RawForge`]), as validated ([`Forge`]: it cannot name an unknown
//! kind, an api url with credentials or a query, or a project that is not a plain path), and
//! the checks between them, together: a forge's settings change here and in `forge/`.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::credentials::CredentialRef;
use super::diagnostic::Origin;
use super::validator::{Str, Validator, at};

// ---- As written ----

/// `[repositories.NAME.forge]`: the forge API that pull requests are opened through.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawForge {
    /// `github`, `gitlab`, `gitea` or `forgejo`.
    #[serde(rename = "type")]
    #[schemars(rename = "type", with = "Option<String>")]
    pub kind: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub api_url: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub project: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub token: Option<Str>,
    #[schemars(with = "Option<u64>")]
    pub app_id: Option<Spanned<i64>>,
    #[schemars(with = "Option<String>")]
    pub app_key: Option<Str>,
    #[schemars(with = "Option<u64>")]
    pub installation_id: Option<Spanned<i64>>,
    /// Allows a plain-http `api_url` (its token then travels in the clear).
    #[schemars(with = "Option<bool>")]
    pub insecure: Option<Spanned<bool>>,
}

// ---- As validated ----

/// The API of the forge that hosts a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forge {
    pub kind: ForgeKind,
    /// `https://api.github.com`, `https://gitlab.example.com/api/v4`,
    /// `https://codeberg.org/api/v1`: no trailing slash.
    pub api_url: String,
    /// `owner/name` (GitHub, Gitea, Forgejo) or the project's full path (GitLab, with groups).
    pub project: String,
    pub auth: ForgeAuth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeKind {
    GitHub,
    GitLab,
    /// Gitea and Forgejo, which share the API.
    Gitea,
}

impl ForgeKind {
    /// What the forge calls a request: the word used in logs, commits and `status`.
    pub fn request_noun(self) -> &'static str {
        match self {
            ForgeKind::GitHub | ForgeKind::Gitea => "pull request",
            ForgeKind::GitLab => "merge request",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "github",
            ForgeKind::GitLab => "gitlab",
            ForgeKind::Gitea => "gitea",
        }
    }
}

/// How image-updater signs in to the forge's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeAuth {
    /// A token (a personal, project or fine-grained access token).
    Token(CredentialRef),
    /// The repository's git `credentials`: the token, or the password of `user:token`.
    Repository(CredentialRef),
    /// A GitHub App: installation tokens made from the app's private key, renewed before they
    /// expire.
    GitHubApp {
        app_id: u64,
        private_key: CredentialRef,
        /// Looked up from the repository when not given.
        installation_id: Option<u64>,
    },
}

// ---- The checks ----

/// Public forges known by their host, with their API.
const KNOWN: &[(&str, ForgeKind, &str)] = &[
    ("github.com", ForgeKind::GitHub, "https://api.github.com"),
    ("gitlab.com", ForgeKind::GitLab, "https://gitlab.com/api/v4"),
    (
        "codeberg.org",
        ForgeKind::Gitea,
        "https://codeberg.org/api/v1",
    ),
];

/// The longest project path accepted (GitLab allows deep groups; 255 is GitLab's own limit
/// for a path's parts together, with room).
const MAX_PROJECT: usize = 512;

impl Validator<'_> {
    /// The repository's forge, if it has one: `raw` when given, else known from `url`.
    /// `credentials` are the repository's git credentials, the token's fallback.
    pub(super) fn forge(
        &mut self,
        repository: &str,
        url: &str,
        raw: Option<&Spanned<RawForge>>,
        credentials: Option<&CredentialRef>,
    ) -> Option<Forge> {
        let parts = url_parts(url);
        let Some(raw) = raw else {
            // Known from the url, or no forge: pushes need none.
            let (host, path) = parts?;
            let (_, kind, api) = KNOWN.iter().find(|(h, _, _)| *h == host)?;
            let auth = ForgeAuth::Repository(credentials?.clone());
            return Some(Forge {
                kind: *kind,
                api_url: api.to_string(),
                project: check_project(*kind, &path).ok()?,
                auth,
            });
        };
        let span = raw.span();
        let raw = raw.get_ref();
        let known = parts
            .as_ref()
            .and_then(|(host, _)| KNOWN.iter().find(|(h, _, _)| h == host));
        let kind = match &raw.kind {
            Some(k) => self.parse(k, "type", parse_kind),
            None => {
                match known {
                    Some((_, kind, _)) => Some(*kind),
                    None => {
                        self.error_hint(
                        Origin::Section(span.clone()),
                        format!("repository `{repository}`: the forge's type is not known from its url"),
                        "add type = \"github\", \"gitlab\", \"gitea\" or \"forgejo\", and api_url",
                    );
                        None
                    }
                }
            }
        };
        // The credentials are checked whatever the type, so one run reports both.
        let auth = self.forge_auth(repository, span.clone(), kind, raw, credentials);
        let kind = kind?;
        let insecure = raw.insecure.as_ref().is_some_and(|i| *i.get_ref());
        let api_url = match &raw.api_url {
            Some(u) => {
                let api_url = self.parse(u, "api_url", check_api_url)?;
                if api_url.starts_with("http://") && !insecure {
                    self.error_hint(
                        at(u),
                        format!("repository `{repository}`: a plain-http api_url sends the forge's token in the clear"),
                        "use https://, or add insecure = true to this [repositories.NAME.forge] if the network is trusted",
                    );
                    return None;
                }
                api_url
            }
            None => match (known, &parts) {
                (Some((_, k, api)), _) if *k == kind => api.to_string(),
                (_, Some((host, _))) if url.starts_with("https://") || url.contains('@') => {
                    default_api(kind, host)
                }
                _ => {
                    self.error_hint(
                        Origin::Section(span),
                        format!("repository `{repository}`: the forge's API url is not known from the repository's url"),
                        "add api_url, as in \"https://git.example.com/api/v1\"",
                    );
                    return None;
                }
            },
        };
        let project = match &raw.project {
            Some(p) => self.parse(p, "project", |p| check_project(kind, p))?,
            None => match parts.as_ref().map(|(_, path)| check_project(kind, path)) {
                Some(Ok(p)) => p,
                Some(Err(e)) => {
                    self.error_hint(
                        Origin::Section(span),
                        format!("repository `{repository}`: {e}"),
                        "add project = \"owner/name\"",
                    );
                    return None;
                }
                None => {
                    self.error_hint(
                        Origin::Section(span),
                        format!("repository `{repository}`: the project is not known from the repository's url"),
                        "add project = \"owner/name\"",
                    );
                    return None;
                }
            },
        };
        Some(Forge {
            kind,
            api_url,
            project,
            auth: auth?,
        })
    }

    fn forge_auth(
        &mut self,
        repository: &str,
        span: std::ops::Range<usize>,
        kind: Option<ForgeKind>,
        raw: &RawForge,
        credentials: Option<&CredentialRef>,
    ) -> Option<ForgeAuth> {
        let token = raw
            .token
            .as_ref()
            .and_then(|t| self.parse(t, "token", CredentialRef::parse));
        let id = |v: &Option<Spanned<i64>>, this: &mut Self, what: &str| -> Option<u64> {
            let v = v.as_ref()?;
            match u64::try_from(*v.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    this.error(at(v), format!("{what} must be a positive number"));
                    None
                }
            }
        };
        let app_id = id(&raw.app_id, self, "app_id");
        let installation_id = id(&raw.installation_id, self, "installation_id");
        let app_key = raw
            .app_key
            .as_ref()
            .and_then(|k| self.parse(k, "app_key", CredentialRef::parse));
        match (token, app_id, app_key) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                self.error_hint(
                    Origin::Section(span),
                    format!(
                        "repository `{repository}`: the forge has both a token and a GitHub App"
                    ),
                    "keep one: token, or app_id with app_key",
                );
                None
            }
            (Some(token), None, None) => Some(ForgeAuth::Token(token)),
            (None, Some(app_id), Some(private_key))
                if kind.is_none_or(|k| k == ForgeKind::GitHub) =>
            {
                Some(ForgeAuth::GitHubApp {
                    app_id,
                    private_key,
                    installation_id,
                })
            }
            (None, Some(_), Some(_)) => {
                self.error(
                    Origin::Section(span),
                    format!("repository `{repository}`: app_id and app_key are for GitHub Apps; {} takes a token", kind.map_or("this forge", ForgeKind::name)),
                );
                None
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                self.error_hint(
                    Origin::Section(span),
                    format!(
                        "repository `{repository}`: a GitHub App needs both app_id and app_key"
                    ),
                    "app_key = \"file:/etc/image-updater/app.pem\" (the app's private key)",
                );
                None
            }
            (None, None, None) => match credentials {
                Some(c) => Some(ForgeAuth::Repository(c.clone())),
                None => {
                    self.error_hint(
                        Origin::Section(span),
                        format!("repository `{repository}`: the forge has no credentials"),
                        "add token = \"env:FORGE_TOKEN\" (or the repository's credentials)",
                    );
                    None
                }
            },
        }
    }
}

fn parse_kind(text: &str) -> Result<ForgeKind, String> {
    match text {
        "github" => Ok(ForgeKind::GitHub),
        "gitlab" => Ok(ForgeKind::GitLab),
        "gitea" | "forgejo" => Ok(ForgeKind::Gitea),
        other => Err(format!(
            "`{other}` is not a forge: expected github, gitlab, gitea or forgejo"
        )),
    }
}

/// The API of a self-hosted forge at `host`.
fn default_api(kind: ForgeKind, host: &str) -> String {
    match kind {
        ForgeKind::GitHub => format!("https://{host}/api/v3"),
        ForgeKind::GitLab => format!("https://{host}/api/v4"),
        ForgeKind::Gitea => format!("https://{host}/api/v1"),
    }
}

fn check_api_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` is not an http(s) url"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') || url.contains(['?', '#']) {
        return Err(format!(
            "`{url}` must be a plain url: a host, a path, no user, query or fragment"
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The host and the path of a git url (`https://host/owner/name.git`, `git@host:owner/name`),
/// without `.git`.
pub fn url_parts(url: &str) -> Option<(String, String)> {
    let (host, path) = if let Some((_, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/')?;
        let host = authority.rsplit('@').next()?;
        (host.split(':').next()?.to_string(), path.to_string())
    } else {
        let (user_host, path) = url.split_once(':')?;
        (user_host.rsplit('@').next()?.to_string(), path.to_string())
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    (!host.is_empty() && !path.is_empty()).then(|| (host.to_lowercase(), path.to_string()))
}

/// `owner/name`, or for GitLab a path of groups: plain names only, so the project can never
/// turn an API path into another.
fn check_project(kind: ForgeKind, project: &str) -> Result<String, String> {
    let parts: Vec<&str> = project.split('/').collect();
    let shape_ok = match kind {
        ForgeKind::GitLab => parts.len() >= 2,
        ForgeKind::GitHub | ForgeKind::Gitea => parts.len() == 2,
    };
    let chars_ok = parts.iter().all(|p| {
        !p.is_empty()
            && *p != "."
            && *p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    });
    if shape_ok && chars_ok && project.len() <= MAX_PROJECT {
        Ok(project.to_string())
    } else {
        let shape = match kind {
            ForgeKind::GitLab => "group/name or group/subgroup/name",
            _ => "owner/name",
        };
        Err(format!("project `{project}` is not {shape}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_host_and_project() {
        assert_eq!(
            url_parts("https://github.com/acme/deploy.git"),
            Some(("github.com".into(), "acme/deploy".into()))
        );
        assert_eq!(
            url_parts("git@gitlab.com:acme/platform/deploy.git"),
            Some(("gitlab.com".into(), "acme/platform/deploy".into()))
        );
        assert_eq!(
            url_parts("ssh://git@codeberg.org:22/acme/deploy"),
            Some(("codeberg.org".into(), "acme/deploy".into()))
        );
        assert_eq!(url_parts("/srv/git/deploy.git").map(|p| p.0), None);
    }

    #[test]
    fn projects_are_plain_paths() {
        assert!(check_project(ForgeKind::GitHub, "acme/deploy").is_ok());
        assert!(check_project(ForgeKind::GitLab, "acme/platform/deploy").is_ok());
        for bad in [
            "acme",
            "acme/deploy/x",
            "../x",
            "acme/..",
            "acme/de ploy",
            "acme/x?y",
        ] {
            assert!(check_project(ForgeKind::GitHub, bad).is_err(), "{bad}");
        }
        assert!(check_project(ForgeKind::GitLab, "acme/../x").is_err());
    }

    #[test]
    fn api_urls_are_plain() {
        assert_eq!(
            check_api_url("https://git.example.com/api/v1/").unwrap(),
            "https://git.example.com/api/v1"
        );
        for bad in [
            "ftp://x",
            "https://u:p@x/api",
            "https://x/api?q",
            "https://",
        ] {
            assert!(check_api_url(bad).is_err(), "{bad}");
        }
    }
}
