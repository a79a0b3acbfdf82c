//! Turning a credential reference into a secret, at the moment it is needed.
//!
//! Secrets live in [`Secret`], whose `Debug` and `Display` print `***`, so no log line or error
//! message can leak one by accident; they are never put in a command's argv.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::config::CredentialRef;
use crate::reference::{DOCKER_HUB, canonical_registry};

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
}

/// Reads the credential for `host` (a registry host such as `ghcr.io`) from `reference`.
/// `Ok(None)` means the source has nothing for this host: access is anonymous.
pub async fn resolve(
    reference: &CredentialRef,
    host: &str,
) -> Result<Option<Credential>, CredentialError> {
    let fail = |reason: String| CredentialError {
        reference: reference.to_string(),
        reason,
    };
    match reference {
        CredentialRef::Env(var) => match std::env::var(var) {
            Ok(v) => Ok(Credential::from_text(&v)),
            Err(_) => Err(fail(format!("environment variable {var} is not set"))),
        },
        CredentialRef::File(path) => tokio::fs::read_to_string(path)
            .await
            .map(|text| Credential::from_text(&text))
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display()))),
        CredentialRef::DockerConfig(path) => {
            let path = match path {
                Some(p) => p.clone(),
                None => default_docker_config()
                    .ok_or_else(|| fail("neither DOCKER_CONFIG nor HOME is set".into()))?,
            };
            docker_config(&path, host).await.map_err(fail)
        }
        CredentialRef::Exec { command, timeout } => {
            let out = run_exec(command, host, *timeout).await.map_err(fail)?;
            Ok(Credential::from_text(&out))
        }
    }
}

/// A secret that is a document rather than a credential (a PEM key), as its source holds it:
/// a file or a variable as it is, a command's output. Docker's config holds no such thing.
pub async fn read_document(reference: &CredentialRef) -> Result<Secret, CredentialError> {
    let fail = |reason: String| CredentialError {
        reference: reference.to_string(),
        reason,
    };
    let text = match reference {
        CredentialRef::File(path) => tokio::fs::read_to_string(path)
            .await
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?,
        CredentialRef::Env(var) => std::env::var(var)
            .map_err(|_| fail(format!("environment variable {var} is not set")))?,
        CredentialRef::Exec { command, timeout } => {
            run_exec(command, "", *timeout).await.map_err(fail)?
        }
        CredentialRef::DockerConfig(_) => {
            return Err(fail(
                "docker's config holds registry logins, not keys: use file:, env: or exec:".into(),
            ));
        }
    };
    if text.trim().is_empty() {
        return Err(fail("it is empty".into()));
    }
    Ok(Secret::new(text))
}

fn default_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
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
async fn docker_config(path: &Path, host: &str) -> Result<Option<Credential>, String> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let config: DockerConfig = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a docker config: {e}", path.display()))?;
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
                    format!(
                        "the `auth` for {host} in {} is not base64 of user:password",
                        path.display()
                    )
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
            return Err(format!(
                "{host} has only an identity token in {}; use `docker login` with a password or token",
                path.display()
            ));
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
async fn credential_helper(helper: &str, host: &str) -> Result<Option<Credential>, String> {
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!("`{helper}` is not a credential helper name"));
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
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(server.as_bytes())
        .await
        .map_err(|e| format!("{program}: {e}"))?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .map_err(|_| format!("{program} did not answer within 10s"))?
        .map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stdout);
        // Helpers say "credentials not found in native keychain" on stdout.
        if stderr.contains("not found") {
            return Ok(None);
        }
        return Err(format!("{program} failed ({})", out.status));
    }
    let parsed: HelperOutput = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("{program} printed something other than credentials JSON"))?;
    if parsed.username == "<token>" {
        return Err(format!(
            "{program} returned an identity token, which needs an OAuth exchange this client does not do"
        ));
    }
    Ok(Some(Credential::Basic {
        username: parsed.username,
        password: Secret::new(parsed.secret),
    }))
}

/// Runs an `exec:` command (split on whitespace, no shell), with the registry host in
/// `IMAGE_UPDATER_REGISTRY`, and returns its first line of output.
async fn run_exec(command: &Path, host: &str, timeout: Duration) -> Result<String, String> {
    let text = command.to_string_lossy();
    let mut words = text.split_whitespace();
    let program = words.next().ok_or("empty command")?;
    let out = tokio::process::Command::new(program)
        .args(words)
        .env("IMAGE_UPDATER_REGISTRY", host)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(timeout, out)
        .await
        .map_err(|_| format!("{program} did not finish within {}s", timeout.as_secs()))?
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} failed ({})", out.status));
    }
    let stdout = String::from_utf8(out.stdout)
        .map_err(|_| format!("{program} printed something that is not text"))?;
    Ok(stdout.lines().next().unwrap_or("").to_string())
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

    #[tokio::test]
    async fn exec_commands_time_out_and_receive_the_host() {
        let ok = CredentialRef::Exec {
            command: "/bin/sh -c echo".into(),
            timeout: Duration::from_secs(5),
        };
        // `sh -c echo` prints an empty line: no credential.
        assert_eq!(resolve(&ok, "ghcr.io").await, Ok(None));
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("tok");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"bot:pw-for-$IMAGE_UPDATER_REGISTRY\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let r = CredentialRef::Exec {
            command: script,
            timeout: Duration::from_secs(5),
        };
        assert_eq!(
            resolve(&r, "ghcr.io").await,
            Ok(Some(Credential::Basic {
                username: "bot".into(),
                password: Secret::new("pw-for-ghcr.io")
            }))
        );
        let slow = CredentialRef::Exec {
            command: "/bin/sleep 5".into(),
            timeout: Duration::from_millis(200),
        };
        let err = resolve(&slow, "ghcr.io").await.unwrap_err();
        assert!(err.reason.contains("did not finish"), "{err}");
    }
}
