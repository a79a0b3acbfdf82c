//! Signed update commits, for branches whose protection requires signatures.
//!
//! The commit is serialized without a signature, signed by `ssh-keygen -Y sign -n git` (what
//! `git commit -S` runs with `gpg.format=ssh`), and the armored signature goes into the commit's
//! `gpgsig` header, so `git verify-commit` and the forges accept it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use gix::objs::WriteTo;

use super::error::GitError;

/// The armored ssh signature of `commit` (which must not carry one yet) made with `key`.
pub fn ssh_sign(commit: &gix::objs::Commit, key: &Path) -> Result<String, GitError> {
    let fail = |message: String| GitError::Command {
        command: "ssh-keygen -Y sign".into(),
        message,
    };
    let mut payload = Vec::new();
    commit
        .write_to(&mut payload)
        .map_err(|e| fail(format!("cannot serialize the commit: {e}")))?;
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "git", "-f"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run ssh-keygen: {e}")))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&payload)
        .map_err(|e| fail(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "cannot sign with {}: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let signature =
        String::from_utf8(out.stdout).map_err(|_| fail("the signature is not text".into()))?;
    Ok(signature.trim_end().to_string())
}
