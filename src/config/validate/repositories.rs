//! `[repositories.NAME]`: the git repositories written to, their credentials and the shape of
//! the commits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::Spanned;

use super::registries::has_userinfo;
use super::{Validator, at};
use crate::config::diagnostic::{Code, Origin};
use crate::config::model::{Author, Repository};
use crate::config::raw::RawRepository;
use crate::config::template::Template;

impl Validator<'_> {
    pub(super) fn repositories(
        &mut self,
        raw: &BTreeMap<String, Spanned<RawRepository>>,
    ) -> BTreeMap<String, Repository> {
        let mut out = BTreeMap::new();
        for (name, repo) in raw {
            let (name, span) = (name.clone(), repo.span());
            let repo = repo.get_ref();
            // The name becomes the mirror's directory under the state dir.
            if let Err(e) = check_name(&name) {
                self.error(Origin::Section(span), e);
                continue;
            }
            let Some(url) = &repo.url else {
                self.error(
                    Origin::Section(span),
                    format!("repository `{name}` has no url"),
                );
                continue;
            };
            if let Err(e) = check_git_url(url.get_ref()) {
                self.error(at(url), format!("url: {e}"));
            }
            let author = match &repo.author {
                Some(a) => self
                    .parse(a, "author", parse_author)
                    .unwrap_or_else(default_author),
                None => default_author(),
            };
            let commit_message = match &repo.commit_message {
                Some(t) => self
                    .parse(t, "commit_message", Template::parse)
                    .unwrap_or_default(),
                None => Template::default(),
            };
            let credentials = self.within(Code::Credentials, |v| {
                v.credentials("repositories", &name, repo.credentials.as_ref())
            });
            let forge = self.within(Code::Forges, |v| {
                v.forge(
                    &name,
                    url.get_ref(),
                    repo.forge.as_ref(),
                    credentials.as_ref(),
                )
            });
            out.insert(
                name.clone(),
                Repository {
                    name,
                    url: url.get_ref().clone(),
                    credentials,
                    author,
                    commit_message,
                    ssh_key: path_of(&repo.ssh_key),
                    known_hosts: path_of(&repo.known_hosts),
                    signing_key: path_of(&repo.signing_key),
                    forge,
                },
            );
        }
        out
    }
}

/// Repository names name the mirror's directory: letters, digits, `-`, `_` and `.`, not
/// starting with a dot, so a name can never reach outside the state dir.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "repository name `{}` may use only letters, digits, `-`, `_` and `.`, and may not start with a dot",
            name.escape_debug()
        ))
    }
}

/// The `user[:password]` part of a URL, if it has one.
fn userinfo(url: &str) -> Option<&str> {
    if !has_userinfo(url) {
        return None;
    }
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    authority.rsplit_once('@').map(|(user, _)| user)
}

/// `url` with any password replaced, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn parse_author(text: &str) -> Result<Author, String> {
    let err = || format!("`{text}` is not `Name <email>`");
    let (name, rest) = text.split_once('<').ok_or_else(err)?;
    let email = rest.strip_suffix('>').ok_or_else(err)?;
    let name = name.trim();
    if name.is_empty()
        || email.is_empty()
        || email.contains(['<', '>'])
        || name.contains(['<', '>'])
    {
        return Err(err());
    }
    Ok(Author {
        name: name.to_string(),
        email: email.to_string(),
    })
}

fn default_author() -> Author {
    Author {
        name: "image-updater".into(),
        email: "image-updater@localhost".into(),
    }
}

fn check_git_url(url: &str) -> Result<(), String> {
    // ssh's user (`ssh://git@host/`) is not a secret; a password, or any user on http, is.
    if let Some(user) = userinfo(url)
        && (!url.starts_with("ssh://") || user.contains(':'))
    {
        return Err(format!(
            "`{}` carries a user name or password: put them in `credentials` (env:, file: or exec:), which git is given only for this repository",
            redact(url)
        ));
    }
    let schemes = ["https://", "http://", "ssh://", "git://", "file://"];
    if schemes
        .iter()
        .any(|s| url.starts_with(s) && url.len() > s.len())
        || url.starts_with('/')
    {
        return Ok(());
    }
    // scp-like: user@host:path
    if let Some((host, path)) = url.split_once(':')
        && host.contains('@')
        && !host.contains('/')
        && !path.is_empty()
    {
        return Ok(());
    }
    Err(format!(
        "`{url}` is not a git url: expected https://, http://, ssh://, git://, file://, user@host:path or an absolute path"
    ))
}

/// A path inside the repository: relative, without `..`, so a config cannot write elsewhere.
fn path_of(value: &Option<Spanned<String>>) -> Option<PathBuf> {
    value.as_ref().map(|p| PathBuf::from(p.get_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authors_and_git_urls() {
        assert_eq!(parse_author("Bot <bot@x.io>").unwrap().email, "bot@x.io");
        assert!(parse_author("bot@x.io").is_err());
        for ok in [
            "https://h/r.git",
            "git@github.com:org/r.git",
            "/srv/git/r.git",
            "ssh://git@h/r",
            "file:///tmp/r",
        ] {
            assert!(check_git_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "r.git",
            "https://",
            "ftp://h/r",
            "https://user:pw@h/r.git",
            "https://token@h/r.git",
            "ssh://git:pw@h/r",
        ] {
            assert!(check_git_url(bad).is_err(), "{bad}");
        }
        let err = check_git_url("https://user:s3cret@h/r.git").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        for bad in ["../../x", ".hidden", "a/b", ""] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name("manifests.prod_1").is_ok());
    }
}
