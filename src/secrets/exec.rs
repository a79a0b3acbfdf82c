//! `exec:/path`: a command printing `user:password` or a token (its first line), or a
//! document (all it prints); killed after its timeout.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Credential, Source, SourceError};

pub(super) struct Exec<'a> {
    pub command: &'a Path,
    pub timeout: Duration,
}

impl Source for Exec<'_> {
    fn credential<'a>(
        &'a self,
        host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Credential>, SourceError>> {
        Box::pin(async move {
            let out = run_exec(self.command, host, self.timeout).await?;
            Ok(Credential::from_text(out.lines().next().unwrap_or("")))
        })
    }

    fn document(&self) -> BoxFuture<'_, Result<String, SourceError>> {
        Box::pin(run_exec(self.command, "", self.timeout))
    }
}

/// Runs an `exec:` command (split on whitespace, no shell), with the registry host in
/// `IMAGE_UPDATER_REGISTRY`, and returns what it printed.
async fn run_exec(command: &Path, host: &str, timeout: Duration) -> Result<String, SourceError> {
    let text = command.to_string_lossy();
    let mut words = text.split_whitespace();
    let program = words
        .next()
        .ok_or_else(|| SourceError::Command("empty command".into()))?;
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
        .map_err(|_| {
            SourceError::Command(format!(
                "{program} did not finish within {}s",
                timeout.as_secs()
            ))
        })?
        .map_err(|e| SourceError::Command(format!("cannot run {program}: {e}")))?;
    if !out.status.success() {
        return Err(SourceError::Command(format!(
            "{program} failed ({})",
            out.status
        )));
    }
    let stdout = String::from_utf8(out.stdout).map_err(|_| {
        SourceError::Invalid(format!("{program} printed something that is not text"))
    })?;
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CredentialRef;
    use crate::secrets::{Secret, read_document, resolve};

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

    /// A document from a command is all it printed: a PEM key is many lines, and its first
    /// alone is no key.
    #[tokio::test]
    async fn a_document_from_a_command_is_all_it_printed() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n";
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("key");
        std::fs::write(&script, format!("#!/bin/sh\nprintf '%s' '{pem}'\n")).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let r = CredentialRef::Exec {
            command: script,
            timeout: Duration::from_secs(5),
        };
        assert_eq!(read_document(&r).await.unwrap(), Secret::new(pem));
    }
}
