//! Credential references: where a secret is read from, never the secret itself.
//!
//! The config names a source (`env:GHCR_TOKEN`, `file:/run/secrets/git`, `docker-config`,
//! `exec:/usr/local/bin/get-token`) so that the file can be committed and shared. Secrets are
//! resolved at the moment of use and never logged: `Display` shows only the reference.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialRef {
    /// An environment variable holding `user:password` or a token.
    Env(String),
    /// A file holding `user:password` or a token (trailing newline ignored).
    File(PathBuf),
    /// Docker's config.json (`auths`, `credHelpers`, `credsStore`); the default path when `None`.
    DockerConfig(Option<PathBuf>),
    /// A command printing `user:password` or a token, killed after `timeout`.
    Exec { command: PathBuf, timeout: Duration },
}

impl CredentialRef {
    pub const EXEC_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn parse(text: &str) -> Result<CredentialRef, String> {
        let (scheme, rest) = text.split_once(':').unwrap_or((text, ""));
        let need = |what: &str| -> Result<(), String> {
            if rest.trim().is_empty() {
                Err(format!("`{scheme}:` needs {what}"))
            } else {
                Ok(())
            }
        };
        match scheme {
            "env" => {
                need("a variable name, as in `env:GHCR_TOKEN`")?;
                if !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!("`{rest}` is not an environment variable name"));
                }
                Ok(CredentialRef::Env(rest.to_string()))
            }
            "file" => {
                need("an absolute path, as in `file:/run/secrets/token`")?;
                absolute(rest).map(CredentialRef::File)
            }
            "docker-config" => Ok(CredentialRef::DockerConfig(
                (!rest.is_empty()).then(|| absolute(rest)).transpose()?,
            )),
            "exec" => {
                need("an absolute command path, as in `exec:/usr/local/bin/token`")?;
                Ok(CredentialRef::Exec {
                    command: absolute(rest)?,
                    timeout: Self::EXEC_TIMEOUT,
                })
            }
            "pullsecret" | "secret" => Err(format!(
                "`{scheme}:` reads Kubernetes secrets, and image-updater needs no cluster: \
                 use `env:`, `file:`, `docker-config` or `exec:`"
            )),
            _ => Err(format!(
                "unknown credential source `{scheme}`: expected `env:VAR`, `file:/path`, \
                 `docker-config[:/path]` or `exec:/path`"
            )),
        }
    }
}

fn absolute(path: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(path);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(format!(
            "`{path}` is relative: write an absolute path, the daemon's working directory is not yours"
        ))
    }
}

impl fmt::Display for CredentialRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialRef::Env(var) => write!(f, "env:{var}"),
            CredentialRef::File(path) => write!(f, "file:{}", path.display()),
            CredentialRef::DockerConfig(None) => f.write_str("docker-config"),
            CredentialRef::DockerConfig(Some(path)) => {
                write!(f, "docker-config:{}", path.display())
            }
            CredentialRef::Exec { command, .. } => write!(f, "exec:{}", command.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            CredentialRef::parse("env:GHCR_TOKEN"),
            Ok(CredentialRef::Env("GHCR_TOKEN".into()))
        );
        assert_eq!(
            CredentialRef::parse("file:/run/secrets/t"),
            Ok(CredentialRef::File("/run/secrets/t".into()))
        );
        assert_eq!(
            CredentialRef::parse("docker-config"),
            Ok(CredentialRef::DockerConfig(None))
        );
        assert!(matches!(
            CredentialRef::parse("exec:/bin/tok"),
            Ok(CredentialRef::Exec { .. })
        ));
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(
            CredentialRef::parse("env:")
                .unwrap_err()
                .contains("variable name")
        );
        assert!(
            CredentialRef::parse("file:token.txt")
                .unwrap_err()
                .contains("relative")
        );
        assert!(
            CredentialRef::parse("pullsecret:argocd/ghcr")
                .unwrap_err()
                .contains("no cluster")
        );
        assert!(
            CredentialRef::parse("vault:x")
                .unwrap_err()
                .contains("unknown credential source")
        );
    }
}
