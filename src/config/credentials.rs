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
    /// registry's password; the region is the registry host's unless given, and with a
    /// role, the keys found first assume it.
    Aws {
        region: Option<String>,
        role: Option<String>,
    },
    /// Google Artifact Registry or Container Registry: Application Default Credentials,
    /// used as an OAuth access token.
    Gcp,
    /// Azure Container Registry: an Azure AD token (workload identity, managed identity or
    /// a service principal) exchanged for the registry's refresh token; a managed identity's
    /// client id when one is given.
    Azure { client_id: Option<String> },
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
                // `aws`, `aws:REGION`, `aws:REGION:ROLE_ARN` or `aws::ROLE_ARN`.
                let (region, role) = rest.split_once(':').unwrap_or((rest, ""));
                let region_like = region.len() <= 32
                    && region
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !region_like {
                    return Err(format!(
                        "`{region}` is not an AWS region: write it like `aws:eu-west-1`, or \
                         `aws:eu-west-1:arn:aws:iam::123456789012:role/NAME` to assume a role"
                    ));
                }
                let role_like = role.starts_with("arn:")
                    && role.contains(":role/")
                    && role.len() <= 2048
                    && role.bytes().all(|b| b.is_ascii_graphic());
                if !role.is_empty() && !role_like {
                    return Err(format!(
                        "`{role}` is not a role ARN: write it like \
                         `arn:aws:iam::123456789012:role/NAME`"
                    ));
                }
                Ok(CredentialRef::Aws {
                    region: (!region.is_empty()).then(|| region.to_string()),
                    role: (!role.is_empty()).then(|| role.to_string()),
                })
            }
            "gcp" if rest.is_empty() => Ok(CredentialRef::Gcp),
            "gcp" => Err(format!(
                "`gcp` takes no settings (`{rest}`): the project and identity come from \
                 Application Default Credentials"
            )),
            "azure" if rest.is_empty() => Ok(CredentialRef::Azure { client_id: None }),
            "azure" => {
                let guid_like =
                    rest.len() == 36 && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
                if !guid_like {
                    return Err(format!(
                        "`{rest}` is not an Azure client id: write it like \
                         `azure:00000000-0000-0000-0000-000000000000`"
                    ));
                }
                Ok(CredentialRef::Azure {
                    client_id: Some(rest.to_ascii_lowercase()),
                })
            }
            "pullsecret" | "secret" => Err(format!(
                "`{scheme}:` reads Kubernetes secrets, and image-updater needs no cluster: \
                 use `env:`, `file:`, `docker-config` or `exec:`"
            )),
            _ => Err(format!(
                "unknown credential source `{scheme}`: expected `env:VAR`, `file:/path`, \
                 `docker-config[:/path]`, `exec:/path`, `aws[:REGION]`, `gcp` or `azure[:CLIENT_ID]`"
            )),
        }
    }

    /// Whether this is a cloud's sign-in, whose registry passwords expire and are renewed
    /// rather than read again.
    pub fn is_cloud(&self) -> bool {
        matches!(
            self,
            CredentialRef::Aws { .. } | CredentialRef::Gcp | CredentialRef::Azure { .. }
        )
    }

    /// The credentials a registry host implies when the config names none: Amazon ECR
    /// (`ACCOUNT.dkr.ecr.REGION.amazonaws.com`, `public.ecr.aws`) signs in with AWS
    /// credentials, Artifact Registry (`REGION-docker.pkg.dev`) and Container Registry
    /// (`gcr.io`, `eu.gcr.io`) with Google's, and `NAME.azurecr.io` with Azure's.
    pub fn implied_by_host(host: &str) -> Option<CredentialRef> {
        let name = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        let label_ok =
            |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ecr_region(host).is_some() || name == "public.ecr.aws" {
            return Some(CredentialRef::Aws {
                region: None,
                role: None,
            });
        }
        let google = name == "gcr.io"
            || name.strip_suffix(".gcr.io").is_some_and(label_ok)
            || name.strip_suffix("-docker.pkg.dev").is_some_and(label_ok);
        if google {
            return Some(CredentialRef::Gcp);
        }
        let azure = ["azurecr.io", "azurecr.cn", "azurecr.us"].iter().any(|d| {
            name.strip_suffix(d)
                .and_then(|n| n.strip_suffix('.'))
                .is_some_and(label_ok)
        });
        azure.then_some(CredentialRef::Azure { client_id: None })
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
            CredentialRef::Aws { region, role } => {
                f.write_str("aws")?;
                if region.is_some() || role.is_some() {
                    write!(f, ":{}", region.as_deref().unwrap_or(""))?;
                }
                if let Some(role) = role {
                    write!(f, ":{role}")?;
                }
                Ok(())
            }
            CredentialRef::Gcp => f.write_str("gcp"),
            CredentialRef::Azure { client_id: None } => f.write_str("azure"),
            CredentialRef::Azure {
                client_id: Some(id),
            } => write!(f, "azure:{id}"),
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
    fn cloud_hosts_imply_their_sign_in() {
        let aws = Some(CredentialRef::Aws {
            region: None,
            role: None,
        });
        let azure = Some(CredentialRef::Azure { client_id: None });
        for (host, implied) in [
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", &aws),
            ("public.ecr.aws", &aws),
            ("europe-west1-docker.pkg.dev", &Some(CredentialRef::Gcp)),
            ("gcr.io", &Some(CredentialRef::Gcp)),
            ("eu.gcr.io", &Some(CredentialRef::Gcp)),
            ("myregistry.azurecr.io", &azure),
            ("ghcr.io", &None),
            ("evil.com/x.azurecr.io", &None),
            ("azurecr.io", &None),
            ("pkg.dev", &None),
            ("a.b.gcr.io", &None),
        ] {
            assert_eq!(&CredentialRef::implied_by_host(host), implied, "{host}");
        }
        assert_eq!(CredentialRef::parse("gcp"), Ok(CredentialRef::Gcp));
        assert!(CredentialRef::parse("gcp:proj").is_err());
        for text in [
            "aws",
            "aws:eu-west-1",
            "aws:eu-west-1:arn:aws:iam::123456789012:role/ecr-reader",
            "aws::arn:aws:iam::123456789012:role/ecr-reader",
        ] {
            assert_eq!(CredentialRef::parse(text).unwrap().to_string(), text);
        }
        assert!(CredentialRef::parse("aws:eu-west-1:someone").is_err());
        assert!(CredentialRef::parse("aws:EU").is_err());
        assert_eq!(
            CredentialRef::parse("azure:0A1B2C3D-0000-0000-0000-000000000000")
                .map(|c| c.to_string()),
            Ok("azure:0a1b2c3d-0000-0000-0000-000000000000".to_string())
        );
        assert!(CredentialRef::parse("azure:me").is_err());
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
