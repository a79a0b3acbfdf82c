//! Turning a credential reference into a secret, at the moment it is needed.
//!
//! Secrets live in [`Secret`], whose `Debug` and `Display` print `***`, so no log line or error
//! message can leak one by accident; they are never put in a command's argv.
//!
//! Each kind of source (`env:`, `file:`, `docker-config`, `exec:`, and the clouds' sign-ins
//! under `cloud/`) is a [`Source`] in a file of its own; [`source_of`] is the one place that
//! maps a [`CredentialRef`] to its source. Adding a source is a file here, its spelling in
//! `config/credentials.rs`, and one line in [`source_of`].

use std::fmt;

use futures_util::future::BoxFuture;

use crate::config::CredentialRef;

pub mod cloud;
mod docker_config;
mod env;
mod exec;
mod file;

/// A secret string that refuses to be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What a registry is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `user:password`: sent as HTTP basic auth to the registry or its token service.
    Basic { username: String, password: Secret },
    /// A bare token: sent as `Authorization: Bearer` to the registry itself.
    Bearer(Secret),
}

impl Credential {
    /// The credential as it was written: `user:password`, or the token. For secrets that are
    /// not registry credentials (a webhook secret, a notification URL).
    pub fn into_text(self) -> String {
        match self {
            Credential::Basic { username, password } => format!("{username}:{}", password.expose()),
            Credential::Bearer(token) => token.expose().to_string(),
        }
    }

    /// `user:password` is basic auth; anything without a colon is a bearer token.
    pub fn from_text(text: &str) -> Option<Credential> {
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            return None;
        }
        Some(match text.split_once(':') {
            Some((user, pass)) if !user.is_empty() => Credential::Basic {
                username: user.to_string(),
                password: Secret::new(pass),
            },
            _ => Credential::Bearer(Secret::new(text)),
        })
    }
}

/// Why a credential could not be read. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credentials {reference}: {reason}")]
pub struct CredentialError {
    pub reference: String,
    pub reason: String,
    /// No link of a cloud's chain had credentials at all (nothing was refused or broken):
    /// a registry that was not told to use them may still be read anonymously.
    pub nothing_found: bool,
}

impl CredentialError {
    fn from_source(reference: &CredentialRef, e: SourceError) -> CredentialError {
        CredentialError {
            reference: reference.to_string(),
            nothing_found: matches!(e, SourceError::NothingFound(_)),
            reason: e.to_string(),
        }
    }
}

/// Why a source has no secret to give; never holds the secret. [`resolve`] and
/// [`read_document`] name the reference it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// What the source names is not there, or cannot be read: a variable not set, a file
    /// missing or unreadable, no place for docker's config.
    #[error("{0}")]
    Missing(String),
    /// What it holds or printed is not what it should be: not a docker config, not base64,
    /// not credentials JSON, not text, or not the kind of secret asked for.
    #[error("{0}")]
    Invalid(String),
    /// A command (an `exec:` command, a docker credential helper) could not run, failed, or
    /// did not finish in time.
    #[error("{0}")]
    Command(String),
    /// No link of a cloud's credential chain is set up here; says what each link said.
    #[error("{0}")]
    NothingFound(String),
}

/// The registry a credential is for: its host (`ghcr.io`), and the url of its API, where a
/// cloud's exchange may be (Azure's `/oauth2/exchange`).
#[derive(Debug, Clone, Copy)]
pub struct Registry<'a> {
    pub host: &'a str,
    pub base_url: &'a str,
}

/// Where a secret is read from, when it is needed.
pub trait Source: Send + Sync {
    /// The registry credential for `host` (`ghcr.io`); `Ok(None)` when the source has
    /// nothing for it: access is anonymous.
    fn credential<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, SourceError>>;

    /// A secret that is a document rather than a credential (a PEM key, a webhook secret), as
    /// the source holds it.
    fn document(&self) -> BoxFuture<'_, Result<String, SourceError>>;

    /// The credential for `registry` and when it is due again, from sources whose passwords
    /// expire (a cloud's sign-in); `None` from the others, which the registry client reads
    /// again after the registry's `credentials_ttl`.
    fn lease<'a>(
        &'a self,
        _registry: Registry<'a>,
    ) -> BoxFuture<'a, Result<Option<cloud::Lease>, SourceError>> {
        Box::pin(async { Ok(None) })
    }

    /// Where a cloud's sign-in finds its credentials here, for `check`, without asking the
    /// registry; `None` for sources that are not a cloud's.
    fn identity(&self) -> BoxFuture<'_, Result<Option<String>, SourceError>> {
        Box::pin(async { Ok(None) })
    }
}

/// The source a reference names.
pub fn source_of(reference: &CredentialRef) -> Box<dyn Source + '_> {
    match reference {
        CredentialRef::Env(var) => Box::new(env::Env(var)),
        CredentialRef::File(path) => Box::new(file::File(path)),
        CredentialRef::DockerConfig(path) => Box::new(docker_config::DockerConfig(path.as_deref())),
        CredentialRef::Exec { command, timeout } => Box::new(exec::Exec {
            command,
            timeout: *timeout,
        }),
        CredentialRef::Aws { region, role } => Box::new(cloud::aws::Aws {
            region: region.as_deref(),
            role: role.as_deref(),
        }),
        CredentialRef::Gcp => Box::new(cloud::gcp::Gcp),
        CredentialRef::Azure { client_id } => Box::new(cloud::azure::Azure {
            client_id: client_id.as_deref(),
        }),
    }
}

/// Reads the credential for `host` (a registry host such as `ghcr.io`) from `reference`.
/// `Ok(None)` means the source has nothing for this host: access is anonymous.
pub async fn resolve(
    reference: &CredentialRef,
    host: &str,
) -> Result<Option<Credential>, CredentialError> {
    source_of(reference)
        .credential(host)
        .await
        .map_err(|e| CredentialError::from_source(reference, e))
}

/// The credential for `registry` and when to ask again, when `reference` is a source whose
/// passwords expire; `Ok(None)` for the others.
pub async fn lease(
    reference: &CredentialRef,
    registry: Registry<'_>,
) -> Result<Option<cloud::Lease>, CredentialError> {
    source_of(reference)
        .lease(registry)
        .await
        .map_err(|e| CredentialError::from_source(reference, e))
}

/// Where `reference`'s cloud credentials come from here (`AWS credentials from the web
/// identity token file`), or what its chain tried; `Ok(None)` when it is not a cloud's.
pub async fn identity(reference: &CredentialRef) -> Result<Option<String>, CredentialError> {
    source_of(reference)
        .identity()
        .await
        .map_err(|e| CredentialError::from_source(reference, e))
}

/// A secret that is a document rather than a credential (a PEM key), as its source holds it:
/// a file or a variable as it is, a command's output. Docker's config holds no such thing.
pub async fn read_document(reference: &CredentialRef) -> Result<Secret, CredentialError> {
    let text = source_of(reference)
        .document()
        .await
        .map_err(|e| CredentialError::from_source(reference, e))?;
    if text.trim().is_empty() {
        let empty = SourceError::Invalid("it is empty".into());
        return Err(CredentialError::from_source(reference, empty));
    }
    Ok(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let c = Credential::from_text("bot:hunter2\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(
            Credential::from_text("tok3n"),
            Some(Credential::Bearer(Secret::new("tok3n")))
        );
        assert_eq!(Credential::from_text(""), None);
    }
}
