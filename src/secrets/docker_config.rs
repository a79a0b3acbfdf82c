//! `docker-config[:/path]`: Docker's config.json, read the way docker reads it (`credHelpers`,
//! `auths`, `credsStore`), with Docker Hub's aliases folded.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{Credential, Secret, Source, SourceError};
use crate::reference::{DOCKER_HUB, canonical_registry};

/// The config at the path, or at docker's default place when `None`.
pub(super) struct DockerConfig<'a>(pub Option<&'a Path>);

impl Source for DockerConfig<'_> {
    fn credential<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, SourceError>> {
        Box::pin(async move {
            let path = match self.0 {
                Some(p) => p.to_path_buf(),
                None => default_docker_config().ok_or_else(|| {
                    SourceError::Missing("neither DOCKER_CONFIG nor HOME is set".into())
                })?,
            };
            docker_config(&path, host).await
        })
    }

    fn document(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(async {
            Err(SourceError::Invalid(
                "docker's config holds registry logins, not keys: use file:, env: or exec:".into(),
            ))
        })
    }
}

fn default_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigJson {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, DockerAuth>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// Looks `host` up in a docker config.json the way docker does: a per-registry credential
/// helper first, then `auths`, then the default store. Keys are compared after folding Docker
/// Hub's aliases, so `https://index.docker.io/v1/` matches `docker.io`.
async fn docker_config(path: &Path, host: &str) -> Result<Option<Credential>, SourceError> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(SourceError::Missing(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let config: ConfigJson = serde_json::from_str(&text).map_err(|e| {
        SourceError::Invalid(format!("{} is not a docker config: {e}", path.display()))
    })?;
    let host = canonical_registry(host);
    let matches = |key: &str| canonical_registry(key) == host;
    if let Some((_, helper)) = config.cred_helpers.iter().find(|(k, _)| matches(k)) {
        return credential_helper(helper, host).await;
    }
    if let Some((_, auth)) = config.auths.iter().find(|(k, _)| matches(k)) {
        if let Some(encoded) = auth.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    SourceError::Invalid(format!(
                        "the `auth` for {host} in {} is not base64 of user:password",
                        path.display()
                    ))
                })?;
            return Ok(Credential::from_text(&decoded));
        }
        if let (Some(u), Some(p)) = (&auth.username, &auth.password) {
            return Ok(Some(Credential::Basic {
                username: u.clone(),
                password: Secret::new(p.clone()),
            }));
        }
        if let Some(token) = &auth.registrytoken {
            return Ok(Some(Credential::Bearer(Secret::new(token.clone()))));
        }
        if auth.identitytoken.is_some() {
            return Err(SourceError::Invalid(format!(
                "{host} has only an identity token in {}; use `docker login` with a password or token",
                path.display()
            )));
        }
    }
    match &config.creds_store {
        Some(store) => credential_helper(store, host).await,
        None => Ok(None),
    }
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the server URL on stdin, as docker does.
async fn credential_helper(helper: &str, host: &str) -> Result<Option<Credential>, SourceError> {
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(SourceError::Invalid(format!(
            "`{helper}` is not a credential helper name"
        )));
    }
    let program = format!("docker-credential-{helper}");
    let server = if host == DOCKER_HUB {
        "https://index.docker.io/v1/"
    } else {
        host
    };
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| SourceError::Command(format!("cannot run {program}: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(server.as_bytes())
        .await
        .map_err(|e| SourceError::Command(format!("{program}: {e}")))?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .map_err(|_| SourceError::Command(format!("{program} did not answer within 10s")))?
        .map_err(|e| SourceError::Command(format!("{program}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stdout);
        // Helpers say "credentials not found in native keychain" on stdout.
        if stderr.contains("not found") {
            return Ok(None);
        }
        return Err(SourceError::Command(format!(
            "{program} failed ({})",
            out.status
        )));
    }
    let parsed: HelperOutput = serde_json::from_slice(&out.stdout).map_err(|_| {
        SourceError::Invalid(format!(
            "{program} printed something other than credentials JSON"
        ))
    })?;
    if parsed.username == "<token>" {
        return Err(SourceError::Invalid(format!(
            "{program} returned an identity token, which needs an OAuth exchange this client does not do"
        )));
    }
    Ok(Some(Credential::Basic {
        username: parsed.username,
        password: Secret::new(parsed.secret),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CredentialRef;
    use crate::secrets::resolve;

    #[tokio::test]
    async fn docker_config_auths_and_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("hubuser:hubpass");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"ghcr.io":{{"username":"u","password":"p"}}}}}}"#),
        )
        .unwrap();
        let r = CredentialRef::DockerConfig(Some(path.clone()));
        let hub = resolve(&r, "registry-1.docker.io").await.unwrap().unwrap();
        assert_eq!(
            hub,
            Credential::Basic {
                username: "hubuser".into(),
                password: Secret::new("hubpass")
            }
        );
        assert!(matches!(
            resolve(&r, "ghcr.io").await,
            Ok(Some(Credential::Basic { .. }))
        ));
        assert_eq!(resolve(&r, "quay.io").await, Ok(None));
    }

    #[tokio::test]
    async fn credential_helpers_are_asked_over_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\n[ \"$1\" = get ] || exit 3\necho \"{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"helper-user\\\",\\\"Secret\\\":\\\"s3cret-$server\\\"}\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"credHelpers":{"ghcr.io":"fake"},"credsStore":"fake"}"#,
        )
        .unwrap();
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // The helper is found on PATH, as docker finds it.
        prepend_path(&path);
        let got = resolve(
            &CredentialRef::DockerConfig(Some(config.clone())),
            "ghcr.io",
        )
        .await;
        assert_eq!(
            got.unwrap(),
            Some(Credential::Basic {
                username: "helper-user".into(),
                password: Secret::new("s3cret-ghcr.io")
            })
        );
    }

    /// Puts a directory in front of PATH. Only this test changes PATH, and it only adds to it,
    /// so programs other tests start are still found.
    fn prepend_path(path: &str) {
        // SAFETY: the unit tests of this crate read the environment only through
        // `std::env::var`, which takes the same lock; no C code reads it concurrently.
        unsafe { std::env::set_var("PATH", path) };
    }
}
