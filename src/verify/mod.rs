//! The supply-chain gate: a digest is written only when the keys an image's `verify` names
//! signed exactly that digest (and attested it, when a rule asks for an attestation).
//!
//! Verifying before the commit, rather than in the cluster afterwards, means an unsigned or
//! tampered image never reaches the GitOps repository at all. A candidate that fails is not
//! eligible: the selection moves on to the next tag, with the reason shown by `test`, `plan`,
//! `status` and the log. A registry that cannot be asked is an error for the image this cycle,
//! never a pass and never a reason to fall back to an older tag.
//!
//! - [`keys`]: the public keys (cosign's ECDSA P-256).
//! - [`simple_signing`]: cosign's signature payload, naming the digest it signs.
//! - [`attestation`]: in-toto statements in DSSE envelopes, and the attestation rule.
//!
//! Where cosign puts signatures in a registry is [`crate::registry::signatures`]'s business.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::config::{CredentialRef, Keyless, Verification};
use crate::registry::client::{Client, RegistryError};
use crate::registry::signatures::Attached;
use crate::secrets;

pub mod attestation;
pub mod bundle;
pub mod keyless;
pub mod sct;
pub mod simple_signing;
pub mod timestamp;
pub mod transparency;
pub use crate::trust::{keys, trusted_root};

use keys::PublicKey;
use trusted_root::TrustedRoot;

/// How long a key read from its source is used before it is read again (a rotated key file is
/// picked up without a reload).
const KEY_TTL: Duration = Duration::from_secs(300);
/// Verified digests remembered; past this the memory is dropped and rebuilt.
const MAX_REMEMBERED: usize = 20_000;
/// How long a refused digest is taken as refused without asking the registry again, when it
/// is not the best candidate of a poll ([`Verifier::refused`]). The best candidate is always
/// checked again, so a signature pushed after its image is found on the next poll; one pushed
/// for a tag below an unsigned one is found within this time.
pub const REFUSED_TTL: Duration = Duration::from_secs(15 * 60);
/// The longest base64 signature looked at (a P-256 DER signature is 96 characters).
const MAX_SIGNATURE_TEXT: usize = 1024;

/// What verifying a digest found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed (and attested) as the rules ask: by which key.
    Verified(String),
    /// Not eligible, and why.
    Rejected(String),
}

/// Why a digest could not be verified either way this time.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("verification key {reference}: {reason}")]
    Key { reference: String, reason: String },
    #[error("trusted root {reference}: {reason}")]
    TrustedRoot { reference: String, reason: String },
}

/// Who may sign, read for one check.
struct Signers<'a> {
    keys: Vec<PublicKey>,
    keyless: Option<(&'a Keyless, Arc<TrustedRoot>)>,
}

impl Signers<'_> {
    fn bundle(&self) -> bundle::Signers<'_> {
        bundle::Signers {
            keys: &self.keys,
            keyless: self
                .keyless
                .as_ref()
                .map(|(rule, root)| (*rule, root.as_ref())),
        }
    }

    /// For messages: the keys' fingerprints and the keyless identity.
    fn describe(&self) -> String {
        let mut names: Vec<String> = self.keys.iter().map(|k| format!("key {}", k.id)).collect();
        if let Some((rule, _)) = &self.keyless {
            names.push(format!("{} ({})", rule.identity, rule.issuer));
        }
        names.join(", ")
    }
}

/// What a verdict is remembered by: `registry/repository`, the digest, and the rules' and
/// keys' [`fingerprint`].
type Remembered = (String, String, u64);

/// Verifies digests against `verify` rules, remembering what passed, and for a while what was
/// refused. Shared by every image of a running daemon.
#[derive(Default)]
pub struct Verifier {
    keys: Recent<PublicKey>,
    roots: Recent<Arc<TrustedRoot>>,
    passed: Mutex<HashMap<Remembered, String>>,
    /// Refusals, per digest (not per tag: a tag pushed over is a new digest), and when.
    refused: Mutex<HashMap<Remembered, (String, Instant)>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Why `digest` was refused under `rules` less than [`REFUSED_TTL`] ago, if it was: a poll
    /// walking down past unsigned builds skips these without a request.
    pub async fn refused(
        &self,
        client: &Client,
        repository: &str,
        digest: &str,
        rules: &Verification,
    ) -> Result<Option<String>, VerifyError> {
        let keys = self.keys(rules).await?;
        let remembered = (
            format!("{}/{repository}", client.name()),
            digest.to_string(),
            fingerprint(rules, &keys),
        );
        Ok(self
            .refused
            .lock()
            .expect("verifier lock")
            .get(&remembered)
            .filter(|(_, at)| at.elapsed() < REFUSED_TTL)
            .map(|(why, _)| why.clone()))
    }

    /// Whether `digest` of `repository` (on `client`'s registry) is signed as `rules` ask.
    pub async fn check(
        &self,
        client: &Client,
        repository: &str,
        digest: &str,
        rules: &Verification,
    ) -> Result<Verdict, VerifyError> {
        let signers = Signers {
            keys: self.keys(rules).await?,
            keyless: match &rules.keyless {
                Some(k) => Some((k, self.root(&k.trusted_root).await?)),
                None => None,
            },
        };
        // A pass is remembered for these rules and these keys: a key file replaced in place
        // (a rotation, a revoked key) is read again within KEY_TTL and checks again.
        let remembered = (
            format!("{}/{repository}", client.name()),
            digest.to_string(),
            fingerprint(rules, &signers.keys),
        );
        if let Some(by) = self.passed.lock().expect("verifier lock").get(&remembered) {
            return Ok(Verdict::Verified(by.clone()));
        }
        let verdict = match signature(client, repository, digest, &signers).await? {
            Err(why) => Verdict::Rejected(why),
            Ok(by) => match &rules.attestation {
                None => Verdict::Verified(format!("signed by {by}")),
                Some(rule) => match attested(client, repository, digest, &signers, rule).await? {
                    Ok(att_by) => Verdict::Verified(format!(
                        "signed by {by}, `{}` attested by {att_by}",
                        rule.predicate_type
                    )),
                    Err(why) => Verdict::Rejected(why),
                },
            },
        };
        match &verdict {
            Verdict::Verified(by) => {
                let mut passed = self.passed.lock().expect("verifier lock");
                if passed.len() >= MAX_REMEMBERED {
                    passed.clear();
                }
                self.refused
                    .lock()
                    .expect("verifier lock")
                    .remove(&remembered);
                passed.insert(remembered, by.clone());
            }
            Verdict::Rejected(why) => {
                let mut refused = self.refused.lock().expect("verifier lock");
                if refused.len() >= MAX_REMEMBERED {
                    refused.clear();
                }
                refused.insert(remembered, (why.clone(), Instant::now()));
            }
        }
        Ok(verdict)
    }

    /// A trusted root, read from its source at most [`KEY_TTL`] ago.
    async fn root(&self, reference: &CredentialRef) -> Result<Arc<TrustedRoot>, VerifyError> {
        if let Some(root) = self.roots.get(reference) {
            return Ok(root);
        }
        let root = Arc::new(read_root(reference).await?);
        self.roots.put(reference, root.clone());
        Ok(root)
    }

    /// The rules' keys, each read from its source at most [`KEY_TTL`] ago.
    async fn keys(&self, rules: &Verification) -> Result<Vec<PublicKey>, VerifyError> {
        let mut out = Vec::with_capacity(rules.keys.len());
        for reference in &rules.keys {
            let key = match self.keys.get(reference) {
                Some(key) => key,
                None => {
                    let key = read_key(reference).await?;
                    self.keys.put(reference, key.clone());
                    key
                }
            };
            out.push(key);
        }
        Ok(out)
    }
}

/// What was read from a credential reference, and when: used for [`KEY_TTL`], then read
/// again (a rotated key file or trusted root is picked up without a reload).
struct Recent<T>(Mutex<HashMap<CredentialRef, (T, Instant)>>);

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Recent(Mutex::default())
    }
}

impl<T: Clone> Recent<T> {
    fn get(&self, reference: &CredentialRef) -> Option<T> {
        self.0
            .lock()
            .expect("verifier lock")
            .get(reference)
            .filter(|(_, at)| at.elapsed() < KEY_TTL)
            .map(|(value, _)| value.clone())
    }

    fn put(&self, reference: &CredentialRef, value: T) {
        self.0
            .lock()
            .expect("verifier lock")
            .insert(reference.clone(), (value, Instant::now()));
    }
}

/// Reads a trusted root from its source.
async fn read_root(reference: &CredentialRef) -> Result<TrustedRoot, VerifyError> {
    let fail = |reason: String| VerifyError::TrustedRoot {
        reference: reference.to_string(),
        reason,
    };
    let text = secrets::read_document(reference)
        .await
        .map_err(|e| fail(e.reason))?;
    TrustedRoot::parse(text.expose()).map_err(fail)
}

/// Reads one public key from its source.
pub async fn read_key(reference: &CredentialRef) -> Result<PublicKey, VerifyError> {
    let fail = |reason: String| VerifyError::Key {
        reference: reference.to_string(),
        reason,
    };
    let text = secrets::read_document(reference)
        .await
        .map_err(|e| fail(e.reason))?;
    PublicKey::from_pem(text.expose()).map_err(|e| fail(e.to_string()))
}

/// The rules and the keys they read, as a number that tells apart rules that differ (the
/// memory of what passed is per rules: a digest verified for one key is not verified for
/// another).
fn fingerprint(rules: &Verification, keys: &[PublicKey]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    rules.hash(&mut hasher);
    for key in keys {
        key.id.hash(&mut hasher);
    }
    hasher.finish()
}

/// Looks for a cosign signature of `digest` by one of `signers`: `Ok(Ok(who))`, or why none
/// counts.
async fn signature(
    client: &Client,
    repository: &str,
    digest: &str,
    signers: &Signers<'_>,
) -> Result<Result<String, String>, RegistryError> {
    let keys = &signers.keys;
    let layers = client
        .attached(repository, digest, Attached::Signatures)
        .await?;
    if layers.is_empty() {
        return Ok(Err(format!("no cosign signature for {digest}")));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut elsewhere = None;
    let mut keyless_why: Option<String> = None;
    let now = jiff::Timestamp::now().as_second();
    for layer in &layers {
        if bundle::is_bundle(&layer.media_type) {
            let blob = client.payload(repository, layer).await?;
            match bundle::check(
                &blob,
                digest,
                &bundle::Purpose::Signature,
                &signers.bundle(),
                now,
            ) {
                Ok(who) => return Ok(Ok(who)),
                Err(attestation::Mismatch::Signed(why)) => {
                    elsewhere = Some(format!("the Sigstore bundle attached to {digest}: {why}"))
                }
                Err(attestation::Mismatch::Unsigned(why)) => {
                    keyless_why
                        .get_or_insert(format!("the Sigstore bundle attached to {digest}: {why}"));
                }
            }
            continue;
        }
        let Some(signature) = layer
            .annotations
            .get(simple_signing::SIGNATURE_ANNOTATION)
            .filter(|s| s.len() <= MAX_SIGNATURE_TEXT)
            .and_then(|s| b64.decode(s.trim()).ok())
        else {
            continue;
        };
        let payload = client.payload(repository, layer).await?;
        let signer = match keys.iter().find(|k| k.verifies(&payload, &signature)) {
            Some(key) => format!("key {}", key.id),
            None => {
                let Some((rule, root)) = &signers.keyless else {
                    continue;
                };
                if !layer.annotations.contains_key(keyless::CERTIFICATE) {
                    continue;
                }
                let signed = keyless::Signed {
                    payload: &payload,
                    signature: &signature,
                    annotations: &layer.annotations,
                };
                match keyless::check(&signed, rule, root, now) {
                    Ok(who) => who,
                    Err(why) => {
                        keyless_why
                            .get_or_insert(format!("a keyless signature for {digest}: {why}"));
                        continue;
                    }
                }
            }
        };
        match simple_signing::signed_digest(&payload) {
            Ok(signed) if signed == digest => return Ok(Ok(signer)),
            Ok(signed) => {
                elsewhere = Some(format!(
                    "the signature by {signer} found for {digest} signs {signed} instead"
                ))
            }
            Err(e) => elsewhere = Some(format!("signature by {signer}: {e}")),
        }
    }
    Ok(Err(elsewhere.or(keyless_why).unwrap_or_else(|| {
        format!(
            "no signature by {} for {digest}: {} signature{} by others",
            signers.describe(),
            layers.len(),
            if layers.len() == 1 { "" } else { "s" },
        )
    })))
}

/// Looks for an attestation of `digest` meeting `rule`, signed by one of `signers` (keyless
/// only in a Sigstore bundle: cosign's classic attestation layer carries no log entry that
/// records its envelope).
async fn attested(
    client: &Client,
    repository: &str,
    digest: &str,
    signers: &Signers<'_>,
    rule: &crate::config::AttestationRule,
) -> Result<Result<String, String>, RegistryError> {
    let layers = client
        .attached(repository, digest, Attached::Attestations)
        .await?;
    let mut why = None;
    let now = jiff::Timestamp::now().as_second();
    for layer in &layers {
        let envelope = client.payload(repository, layer).await?;
        let judged = if bundle::is_bundle(&layer.media_type) {
            bundle::check(
                &envelope,
                digest,
                &bundle::Purpose::Attestation(rule),
                &signers.bundle(),
                now,
            )
        } else if signers.keys.is_empty() {
            Err(attestation::Mismatch::Unsigned(
                "a classic cosign attestation, which is verified only with cosign_key; keyless attestations are read from Sigstore bundles (cosign attest --new-bundle-format)".into(),
            ))
        } else {
            attestation::check(&envelope, &signers.keys, digest, rule).map(|id| format!("key {id}"))
        };
        match judged {
            Ok(by) => return Ok(Ok(by)),
            // A signed attestation that says the wrong thing is the more useful reason.
            Err(attestation::Mismatch::Signed(w)) => why = Some(w),
            Err(attestation::Mismatch::Unsigned(w)) => {
                why.get_or_insert(w);
            }
        }
    }
    Ok(Err(match why {
        Some(w) => format!(
            "no `{}` attestation for {digest} as the rule asks: {w}",
            rule.predicate_type
        ),
        None => format!(
            "no `{}` attestation for {digest} signed by the configured key",
            rule.predicate_type
        ),
    }))
}
