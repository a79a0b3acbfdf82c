//! Sigstore bundles: how cosign 3 (and sigstore-js, and every Sigstore client) stores a
//! signature, attached to the image as an OCI referrer whose layer is the bundle.
//!
//! A bundle holds either a message signature (over the image manifest itself, named by its
//! digest) or a DSSE envelope around an in-toto statement whose subject is the image's digest:
//! cosign 3 signs an image with the predicate type [`SIGN_PREDICATE`], and attests with the
//! predicate type of the attestation. Beside it, the verification material: a public-key hint
//! (a key signed it: the configured keys are tried) or the signing certificate (keyless), and
//! the transparency-log entries.
//!
//! For keyless bundles the signing time is the log's: the entry's signed entry timestamp
//! (Rekor's inclusion promise) verified with the log's key from the trusted root, and the entry
//! must record this very signature and certificate. Without one, the certificate must be valid
//! now, as for a classic signature without cosign's offline bundle.
//!
//! Media types read: `application/vnd.dev.sigstore.bundle+json;version=0.1`, `0.2`, `0.3`, and
//! `application/vnd.dev.sigstore.bundle.v0.3+json`. Everything in a bundle comes from a
//! registry: sizes are bounded by the blob fetch, counts here.

use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;
use x509_cert::Certificate;

use super::attestation::{self, Mismatch};
use super::keyless::{self, Promise};
use super::keys::PublicKey;
use super::timestamp;
use super::transparency::{self, Int};
use super::trusted_root::{RawBytes, TrustedRoot};
use crate::config::{AttestationRule, Keyless};

// Where a bundle is found is the registry's business; what it says is this module's.
pub use crate::registry::signatures::{BUNDLE_MEDIA_TYPES as MEDIA_TYPES, is_bundle};

/// The predicate type of cosign 3's image signature: an in-toto statement that says only "this
/// subject is signed".
pub const SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// The most signatures, certificates and log entries looked at in one bundle.
const MAX_ITEMS: usize = 8;

/// What a bundle must show.
pub enum Purpose<'a> {
    /// A signature of the digest.
    Signature,
    /// An attestation of the digest meeting the rule.
    Attestation(&'a AttestationRule),
}

/// Who may have signed.
pub struct Signers<'a> {
    pub keys: &'a [PublicKey],
    pub keyless: Option<(&'a Keyless, &'a TrustedRoot)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    media_type: String,
    verification_material: Material,
    #[serde(default)]
    message_signature: Option<MessageSignature>,
    #[serde(default)]
    dsse_envelope: Option<Envelope>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Material {
    #[serde(default)]
    certificate: Option<RawBytes>,
    #[serde(default)]
    x509_certificate_chain: Option<Chain>,
    #[serde(default)]
    tlog_entries: Vec<LogEntry>,
    #[serde(default)]
    timestamp_verification_data: Option<TimestampData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimestampData {
    #[serde(default)]
    rfc3161_timestamps: Vec<SignedTimestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedTimestamp {
    signed_timestamp: String,
}

#[derive(Deserialize)]
struct Chain {
    #[serde(default)]
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageSignature {
    message_digest: MessageDigest,
    signature: String,
}

#[derive(Deserialize)]
struct MessageDigest {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogEntry {
    #[serde(default)]
    log_index: Int,
    log_id: LogId,
    #[serde(default)]
    integrated_time: Int,
    #[serde(default)]
    inclusion_promise: Option<InclusionPromise>,
    #[serde(default)]
    inclusion_proof: Option<transparency::InclusionProof>,
    canonicalized_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogId {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InclusionPromise {
    signed_entry_timestamp: String,
}

/// What was signed, and the bytes the signature is over (or their SHA-256, for a message).
enum Signed {
    /// A message signature: the SHA-256 of the message (the image manifest).
    Message { digest: Vec<u8>, signature: Vec<u8> },
    /// A DSSE envelope: the pre-authentication encoding, and its signatures.
    Dsse {
        payload_type: String,
        payload: Vec<u8>,
        signatures: Vec<Vec<u8>>,
    },
}

impl Signed {
    /// The signature `verifies` accepts, if any.
    fn signature_by(&self, verifies: impl Fn(&[u8], &[u8], bool) -> bool) -> Option<&[u8]> {
        match self {
            Signed::Message { digest, signature } => {
                verifies(digest, signature, true).then_some(signature.as_slice())
            }
            Signed::Dsse {
                payload_type,
                payload,
                signatures,
            } => {
                let message = attestation::pae(payload_type, payload);
                signatures
                    .iter()
                    .find(|sig| verifies(&message, sig, false))
                    .map(Vec::as_slice)
            }
        }
    }
}

/// Whether the bundle `blob` shows `purpose` for `digest`, by one of `signers`, checked at
/// `now` (seconds since the epoch) when it has no transparency-log time; `Ok` names the signer.
pub fn check(
    blob: &[u8],
    digest: &str,
    purpose: &Purpose,
    signers: &Signers,
    now: i64,
) -> Result<String, Mismatch> {
    let unsigned = Mismatch::Unsigned;
    let raw: Raw =
        serde_json::from_slice(blob).map_err(|e| unsigned(format!("does not parse: {e}")))?;
    if !is_bundle(&raw.media_type) {
        return Err(unsigned(format!(
            "of unknown media type `{}`",
            raw.media_type.escape_debug()
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let signed = match (&raw.message_signature, &raw.dsse_envelope) {
        (Some(m), None) => {
            if !matches!(purpose, Purpose::Signature) {
                return Err(unsigned("a message signature, not an attestation".into()));
            }
            let signed_digest = b64
                .decode(&m.message_digest.digest)
                .map_err(|_| unsigned("its message digest is not base64".into()))?;
            if m.message_digest.algorithm != "SHA2_256" || crate::hex::encode(&signed_digest) != hex
            {
                let algorithm = match m.message_digest.algorithm.as_str() {
                    "SHA2_256" => "sha256".to_string(),
                    other => other.escape_debug().to_string(),
                };
                return Err(Mismatch::Unsigned(format!(
                    "signs {algorithm}:{} instead",
                    crate::hex::encode(&signed_digest)
                )));
            }
            Signed::Message {
                digest: signed_digest,
                signature: b64
                    .decode(&m.signature)
                    .map_err(|_| unsigned("its signature is not base64".into()))?,
            }
        }
        (None, Some(e)) => Signed::Dsse {
            payload_type: e.payload_type.clone(),
            payload: b64
                .decode(&e.payload)
                .map_err(|_| unsigned("its DSSE payload is not base64".into()))?,
            signatures: e
                .signatures
                .iter()
                .take(MAX_ITEMS)
                .filter_map(|s| b64.decode(&s.sig).ok())
                .collect(),
        },
        _ => {
            return Err(unsigned(
                "neither one message signature nor one DSSE envelope".into(),
            ));
        }
    };
    if let (Purpose::Signature, Signed::Dsse { payload, .. }) = (purpose, &signed) {
        // An attestation is not a signature (whoever made it): told apart before any crypto.
        let statement: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
        let predicate_type = statement["predicateType"].as_str().unwrap_or_default();
        if predicate_type != SIGN_PREDICATE {
            return Err(unsigned(format!(
                "an attestation of `{}`, not a signature",
                predicate_type.escape_debug()
            )));
        }
    }
    let who = signer(&raw, &signed, signers, now).map_err(Mismatch::Unsigned)?;
    // Signed by someone trusted: now what it says.
    if let Signed::Dsse {
        payload_type,
        payload,
        ..
    } = &signed
    {
        let sign_rule = AttestationRule {
            predicate_type: SIGN_PREDICATE.to_string(),
            field: None,
        };
        let rule = match purpose {
            Purpose::Signature => &sign_rule,
            Purpose::Attestation(rule) => rule,
        };
        attestation::judge(payload_type, payload, digest, rule).map_err(Mismatch::Signed)?;
    }
    Ok(who)
}

/// Who signed `signed`: a configured key, or a certificate meeting the keyless rule.
fn signer(raw: &Raw, signed: &Signed, signers: &Signers, now: i64) -> Result<String, String> {
    for key in signers.keys {
        let by_key = signed.signature_by(|message, signature, prehashed| {
            if prehashed {
                key.verifies_prehash(message, signature)
            } else {
                key.verifies(message, signature)
            }
        });
        if by_key.is_some() {
            return Ok(format!("key {}", key.id));
        }
    }
    let material = &raw.verification_material;
    let leaf_der = material.certificate.as_ref().or_else(|| {
        material
            .x509_certificate_chain
            .as_ref()
            .and_then(|c| c.certificates.first())
    });
    let (Some((rule, root)), Some(leaf_der)) = (signers.keyless, leaf_der) else {
        return Err(match leaf_der {
            Some(_) => "signed keyless, and the rule names no keyless signer".into(),
            None => format!(
                "not signed by {}",
                if signers.keys.len() == 1 {
                    format!("key {}", signers.keys[0].id)
                } else {
                    "a configured key".to_string()
                }
            ),
        });
    };
    let leaf = leaf_der
        .certificate()
        .map_err(|_| "its certificate does not parse")?;
    let key = keyless::leaf_key(&leaf)?;
    let signature = signed
        .signature_by(|message, signature, prehashed| {
            if prehashed {
                key.verifies_prehash(message, signature)
            } else {
                key.verifies(message, signature)
            }
        })
        .ok_or("not signed by its certificate's key")?;
    let mut times: Vec<i64> = logged_time(material, signed, signature, &leaf, root)?
        .into_iter()
        .collect();
    times.extend(timestamped(material, signature, root)?);
    keyless::certified(&leaf, &times, rule, root, now)
}

/// The times the bundle's RFC 3161 timestamps give for `signature`: each must verify.
fn timestamped(
    material: &Material,
    signature: &[u8],
    root: &TrustedRoot,
) -> Result<Vec<i64>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some(data) = &material.timestamp_verification_data else {
        return Ok(Vec::new());
    };
    data.rfc3161_timestamps
        .iter()
        .take(MAX_ITEMS)
        .map(|t| {
            let der = b64
                .decode(&t.signed_timestamp)
                .map_err(|_| "its timestamp is not base64".to_string())?;
            timestamp::verify(&der, signature, root)
        })
        .collect()
}

/// What the transparency log says of this signature, from the first entry that checks out:
/// the entry must record this very signature and certificate; its inclusion proof, when there
/// is one, must lead to a root in a checkpoint the log signed; and its inclusion promise (the
/// signed entry timestamp), when there is one, gives the time, `Some`. An entry with neither
/// is not looked at. `Ok(None)`: no entry gives a time.
fn logged_time(
    material: &Material,
    signed: &Signed,
    signature: &[u8],
    leaf: &Certificate,
    root: &TrustedRoot,
) -> Result<Option<i64>, String> {
    let mut why = None;
    let mut proven = false;
    for entry in material.tlog_entries.iter().take(MAX_ITEMS) {
        match logged_entry(entry, signed, signature, leaf, root) {
            Ok(Some(time)) => return Ok(Some(time)),
            Ok(None) => proven = true,
            Err(e) => why = Some(e),
        }
    }
    match why {
        Some(why) if !proven => Err(why),
        _ => Ok(None),
    }
}

/// One entry's part of [`logged_time`]: `Ok(Some(time))` with a verified promise, `Ok(None)`
/// with only a verified inclusion proof.
fn logged_entry(
    entry: &LogEntry,
    signed: &Signed,
    signature: &[u8],
    leaf: &Certificate,
    root: &TrustedRoot,
) -> Result<Option<i64>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if entry.inclusion_promise.is_none() && entry.inclusion_proof.is_none() {
        return Err(
            "its transparency-log entry has neither an inclusion promise nor a proof".into(),
        );
    }
    let (Some(integrated_time), Some(log_index)) =
        (entry.integrated_time.value(), entry.log_index.value())
    else {
        return Err("its transparency-log entry's numbers do not parse".into());
    };
    let log_id = b64
        .decode(&entry.log_id.key_id)
        .map(|id| crate::hex::encode(&id))
        .map_err(|_| "its transparency-log entry's log id is not base64")?;
    let log = keyless::log_of(root, &log_id, "its transparency-log entry")?;
    let body = b64
        .decode(&entry.canonicalized_body)
        .map_err(|_| "its transparency-log entry is not base64")?;
    if let Some(proof) = &entry.inclusion_proof {
        transparency::verify(proof, &body, log)?;
    }
    let time = match &entry.inclusion_promise {
        Some(promise) => {
            let set = b64
                .decode(&promise.signed_entry_timestamp)
                .map_err(|_| "its signed entry timestamp is not base64")?;
            let promise = Promise {
                body: &entry.canonicalized_body,
                integrated_time,
                log_index,
                log_id: &log_id,
                signed_entry_timestamp: &set,
            };
            if !keyless::promise_kept(&promise, log) {
                return Err("its transparency-log entry is not signed by the log".into());
            }
            Some(integrated_time)
        }
        None => None,
    };
    let recorded: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| "its transparency-log entry is not JSON")?;
    if !records(&recorded, signed, signature, leaf) {
        return Err("its transparency-log entry records another signature".into());
    }
    Ok(time)
}

/// Whether a Rekor entry records this signature by this certificate: a `hashedrekord` of the
/// message's digest, or a `dsse` entry of the envelope's payload.
fn records(
    body: &serde_json::Value,
    signed: &Signed,
    signature: &[u8],
    leaf: &Certificate,
) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let spec = &body["spec"];
    let sig_is = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| b64.decode(s).ok())
            .is_some_and(|s| s == signature)
    };
    let cert_is = |v: &serde_json::Value| keyless::logged_certificate(v).as_ref() == Some(leaf);
    match signed {
        Signed::Message { digest, .. } => keyless::records_hashed(body, digest, signature, leaf),
        Signed::Dsse { payload, .. } if body["kind"] == "dsse" => {
            if spec["proposedContent"].is_object() {
                // The entry as proposed (what @sigstore/mock's Rekor logs): the envelope itself
                // and its verifiers.
                let proposed = &spec["proposedContent"];
                let envelope: serde_json::Value = proposed["envelope"]
                    .as_str()
                    .and_then(|e| serde_json::from_str(e).ok())
                    .unwrap_or_default();
                let logged_payload = envelope["payload"]
                    .as_str()
                    .and_then(|p| b64.decode(p).ok());
                logged_payload.as_deref() == Some(payload.as_slice())
                    && envelope["signatures"]
                        .as_array()
                        .is_some_and(|all| all.iter().take(MAX_ITEMS).any(|s| sig_is(&s["sig"])))
                    && proposed["verifiers"]
                        .as_array()
                        .is_some_and(|all| all.iter().take(MAX_ITEMS).any(cert_is))
            } else {
                // The entry as Rekor canonicalizes it: hashes, and each signature with its
                // verifier.
                spec["payloadHash"]["algorithm"] == "sha256"
                    && spec["payloadHash"]["value"]
                        == crate::hex::encode(&sha2::Sha256::digest(payload))
                    && spec["signatures"].as_array().is_some_and(|all| {
                        all.iter()
                            .take(MAX_ITEMS)
                            .any(|s| sig_is(&s["signature"]) && cert_is(&s["verifier"]))
                    })
            }
        }
        Signed::Dsse { .. } => false,
    }
}
