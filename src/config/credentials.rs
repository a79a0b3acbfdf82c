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
    /// Amazon ECR: AWS credentials found as AWS's tools find them, exchanged for the
    /// registry's password; the region is the registry host's unless given.
    Aws { region: Option<String> },
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
            "aws" => {
                if rest.is_empty() {
                    return Ok(CredentialRef::Aws { region: None });
                }
                let region_like = rest.len() <= 32
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !region_like {
                    return Err(format!(
                        "`{rest}` is not an AWS region: write it like `aws:eu-west-1`"
                    ));
                }
                Ok(CredentialRef::Aws {
                    region: Some(rest.to_string()),
                })
            }
            "pullsecret" | "secret" => Err(format!(
                "`{scheme}:` reads Kubernetes secrets, and image-updater needs no cluster: \
                 use `env:`, `file:`, `docker-config` or `exec:`"
            )),
            _ => Err(format!(
                "unknown credential source `{scheme}`: expected `env:VAR`, `file:/path`, \
                 `docker-config[:/path]`, `exec:/path` or `aws[:REGION]`"
            )),
        }
    }

    /// The credentials a registry host implies when the config names none: an Amazon ECR
    /// registry (`ACCOUNT.dkr.ecr.REGION.amazonaws.com`) signs in with AWS credentials.
    pub fn implied_by_host(host: &str) -> Option<CredentialRef> {
        ecr_region(host).map(|_| CredentialRef::Aws { region: None })
    }
}

/// The region an ECR registry host names, when it is one.
pub fn ecr_region(host: &str) -> Option<String> {
    let host = host.split(':').next().unwrap_or(host);
    let rest = host.split_once(".dkr.ecr.")?.1;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    (!region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
    .then(|| region.to_string())
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
            CredentialRef::Aws { region: None } => f.write_str("aws"),
            CredentialRef::Aws {
                region: Some(region),
            } => write!(f, "aws:{region}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_read_from_ecr_hosts() {
        assert_eq!(
            ecr_region("123456789012.dkr.ecr.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            ecr_region("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(ecr_region("ghcr.io"), None);
        assert_eq!(ecr_region("evil.dkr.ecr.x/y.amazonaws.com"), None);
    }

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
