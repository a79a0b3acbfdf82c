//! Signatures made by tools this project did not write, so that a misreading of cosign's
//! formats shared by our verifier and our own fixtures ([`super::cosign`]) cannot pass:
//!
//! - `tests/oracles/cosign_spec.py`: cosign's classic `.sig` signatures, following cosign's
//!   SIGNATURE_SPEC.md, made with Python's `cryptography` (Debian's python3-cryptography);
//! - `tests/oracles/sign.js`: Sigstore bundles made by sigstore-js (`@sigstore/sign`), with
//!   keyless certificates, transparency-log entries and timestamps from `@sigstore/mock`, and
//!   attached to the image by `@sigstore/oci` (installed by `npm ci` in `tests/oracles`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::cosign::Key;
use super::need::PYTHON;

/// Where the signers live.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles")
}

/// Whether Python's `cryptography` is there for [`PYTHON`].
pub fn has_cryptography() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether sigstore-js is installed beside `sign.js`, and a node it supports (20.17 or newer)
/// runs.
pub fn has_sigstore_js() -> bool {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut parts = version
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    dir().join("node_modules/@sigstore/sign").is_dir() && (major, minor) >= (20, 17)
}

fn run(command: &mut Command) -> String {
    let out = command.output().expect("the signer runs");
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A key pair made by Python's `cryptography` (PKCS#8 private key, SubjectPublicKeyInfo public
/// key, both PEM).
pub fn keypair(dir: &Path, name: &str) -> Key {
    run(Command::new(PYTHON)
        .arg(super::sigstore::dir().join("cosign_spec.py"))
        .args(["keypair", dir.to_str().unwrap(), name]));
    Key {
        private: dir.join(format!("{name}.key")),
        public: dir.join(format!("{name}.pub")),
    }
}

/// How the signed payload spells its keys.
#[derive(Clone, Copy)]
pub enum Spelling {
    /// As cosign writes them: `docker-manifest-digest`.
    Cosign,
    /// As SIGNATURE_SPEC.md's example does: `Docker-manifest-digest`.
    Spec,
}

/// Signs `digest` of `repo` (on the registry at `base`) with `key` as SIGNATURE_SPEC.md says,
/// and attaches the signature under cosign's `sha256-<hex>.sig` tag.
pub fn sign_spec(base: &str, repo: &str, digest: &str, key: &Key, spelling: Spelling) {
    let spelling = match spelling {
        Spelling::Cosign => "cosign",
        Spelling::Spec => "spec",
    };
    run(Command::new(PYTHON)
        .arg(dir().join("cosign_spec.py"))
        .args(["sign", base, repo, digest, key.private.to_str().unwrap()])
        .args(["--spelling", spelling]));
}

/// Runs sigstore-js on `items` (see `sign.js`) against the registry at `host`; the trusted
/// root of its mock Sigstore services is written to `dir/trusted_root.json`. Returns each
/// item's bundle.
pub fn sigstore_js(host: &str, dir: &Path, items: Value) -> Vec<Value> {
    let job = dir.join(format!("sigstore-job-{}.json", fastrand_suffix()));
    let spec = serde_json::json!({"registry": host, "dir": dir, "items": items});
    std::fs::write(&job, serde_json::to_vec(&spec).unwrap()).unwrap();
    let out = run(Command::new("node")
        .arg(super::sigstore::dir().join("sign.js"))
        .arg(&job));
    out.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["bundle"].clone())
        .collect()
}

fn fastrand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}
