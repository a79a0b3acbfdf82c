//! cosign's attestations: an in-toto statement in a DSSE envelope, signed by the key, whose
//! subject is the image's digest and whose predicate (SLSA provenance, an SBOM, …) says how the
//! image was made. A rule asks for a predicate type and, optionally, one field's value (the
//! builder's id, the source repository).

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::keys::PublicKey;
use crate::config::AttestationRule;

/// The payload type cosign's attestations carry.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The most signatures looked at in one envelope.
const MAX_SIGNATURES: usize = 8;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload_type: String,
    payload: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

/// DSSE's pre-authentication encoding: what the signature is over.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Whether `envelope` (one attestation layer's blob) is signed by one of `keys`, attests
/// `digest`, and meets `rule`; `Ok` names the key, `Err` says why not.
pub fn check(
    envelope: &[u8],
    keys: &[PublicKey],
    digest: &str,
    rule: &AttestationRule,
) -> Result<String, Mismatch> {
    let envelope: Envelope = serde_json::from_slice(envelope)
        .map_err(|e| Mismatch::Unsigned(format!("not a DSSE envelope: {e}")))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(envelope.payload.as_bytes())
        .map_err(|_| Mismatch::Unsigned("its payload is not base64".into()))?;
    let message = pae(&envelope.payload_type, &payload);
    let signer = envelope
        .signatures
        .iter()
        .take(MAX_SIGNATURES)
        .filter_map(|s| b64.decode(s.sig.as_bytes()).ok())
        .find_map(|sig| keys.iter().find(|k| k.verifies(&message, &sig)))
        .ok_or_else(|| Mismatch::Unsigned("not signed by a configured key".into()))?;
    judge(&envelope.payload_type, &payload, digest, rule).map_err(Mismatch::Signed)?;
    Ok(signer.id.clone())
}

/// Whether a signed in-toto statement (`payload`, of `payload_type`) attests `digest` as `rule`
/// asks; `Err` says why not.
pub fn judge(
    payload_type: &str,
    payload: &[u8],
    digest: &str,
    rule: &AttestationRule,
) -> Result<(), String> {
    if payload_type != PAYLOAD_TYPE {
        return Err(format!(
            "payload type `{}`, not an in-toto statement",
            payload_type.escape_debug()
        ));
    }
    let statement: Value =
        serde_json::from_slice(payload).map_err(|e| format!("the statement is not JSON: {e}"))?;
    let predicate_type = statement["predicateType"].as_str().unwrap_or_default();
    if predicate_type != rule.predicate_type {
        return Err(format!(
            "an attestation of type `{}`, not `{}`",
            predicate_type.escape_debug(),
            rule.predicate_type
        ));
    }
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let about = statement["subject"]
        .as_array()
        .is_some_and(|subjects| subjects.iter().any(|s| s["digest"]["sha256"] == hex));
    if !about {
        return Err(format!(
            "a `{predicate_type}` attestation whose subject is not {digest}"
        ));
    }
    if let Some((path, wanted)) = &rule.field {
        let found = path
            .split('.')
            .try_fold(&statement, |v, key| v.get(key))
            .and_then(Value::as_str);
        if found != Some(wanted.as_str()) {
            return Err(format!(
                "`{path}` is {}, not `{wanted}`",
                found.map_or("absent".to_string(), |f| format!("`{}`", f.escape_debug()))
            ));
        }
    }
    Ok(())
}

/// Why an attestation does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Not by a configured key (or not readable at all).
    Unsigned(String),
    /// By a configured key, but not what the rule asks for.
    Signed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attestation cosign made, from cosign's own test data
    /// (github.com/sigstore/cosign, `pkg/cosign/testdata/oci-attestation.sigstore.json`): its
    /// DSSE envelope, and the public key of the certificate that signed it (extracted with
    /// `openssl x509 -pubkey` from the bundle's `verificationMaterial.certificate`).
    const COSIGN_ATTESTATION_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEk/CiYRmA9zsa7ams/+fI+wGeXOFx
ng4J0wSj1jub7kxArHhGwvgcVE3ubrGXNQB9X3ksG0F+MiXHG8gRzxrr0A==
-----END PUBLIC KEY-----
";
    const COSIGN_ENVELOPE: &str = r#"{"payload":"eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjAuMSIsInByZWRpY2F0ZVR5cGUiOiJodHRwczovL2Nvc2lnbi5zaWdzdG9yZS5kZXYvYXR0ZXN0YXRpb24vdjEiLCJzdWJqZWN0IjpbeyJuYW1lIjoiMTI3LjAuMC4xOjYwOTQzL3JlcG8iLCJkaWdlc3QiOnsic2hhMjU2IjoiNzMyMTEyMjcwZDdlNTk0MThhOGMwODBiMTM0YjI0Y2FiZDY3ZDI1MGQwZDAxNDdhOTdlZDk1YmE1YzI4MGFhNCJ9fV0sInByZWRpY2F0ZSI6eyJEYXRhIjoie1wiZm9vXCI6IFwiYmFyXCJ9XG4iLCJUaW1lc3RhbXAiOiIyMDI1LTAyLTI4VDE5OjE4OjExWiJ9fQ==","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"MEQCIDomiuYVgNKyfYz/leqvtEY2xuifteigjq+LfShu92BBAiBxixsGZNYBVRhGjX6OZiPQBIoUf+i8VgPh//AT/z4Vgg=="}]}"#;
    const COSIGN_SUBJECT: &str =
        "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4";

    fn rule(field: Option<(&str, &str)>) -> AttestationRule {
        AttestationRule {
            predicate_type: "https://cosign.sigstore.dev/attestation/v1".into(),
            field: field.map(|(f, v)| (f.to_string(), v.to_string())),
        }
    }

    #[test]
    fn an_attestation_cosign_made_verifies() {
        let key = PublicKey::from_pem(COSIGN_ATTESTATION_KEY).unwrap();
        let keys = [key];
        let envelope = COSIGN_ENVELOPE.as_bytes();
        assert_eq!(
            check(envelope, &keys, COSIGN_SUBJECT, &rule(None)),
            Ok(keys[0].id.clone())
        );
        assert_eq!(
            check(
                envelope,
                &keys,
                COSIGN_SUBJECT,
                &rule(Some(("predicate.Timestamp", "2025-02-28T19:18:11Z")))
            ),
            Ok(keys[0].id.clone())
        );
        // Another subject, another predicate type, another field value, another key.
        let other = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            check(envelope, &keys, &other, &rule(None)),
            Err(Mismatch::Signed(w)) if w.contains("subject is not")
        ));
        let slsa = AttestationRule {
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            field: None,
        };
        assert!(matches!(
            check(envelope, &keys, COSIGN_SUBJECT, &slsa),
            Err(Mismatch::Signed(_))
        ));
        assert!(matches!(
            check(envelope, &keys, COSIGN_SUBJECT, &rule(Some(("predicate.Data", "x")))),
            Err(Mismatch::Signed(w)) if w.contains("`predicate.Data` is")
        ));
        let stranger = PublicKey::from_pem(super::super::keys::tests::COSIGN_KEY).unwrap();
        assert!(matches!(
            check(envelope, &[stranger], COSIGN_SUBJECT, &rule(None)),
            Err(Mismatch::Unsigned(_))
        ));
        // The payload changed after signing: no longer signed.
        let tampered = COSIGN_ENVELOPE.replace("eyJfdHlwZSI6", "eyJfdHlwZSI7");
        assert!(matches!(
            check(tampered.as_bytes(), &keys, COSIGN_SUBJECT, &rule(None)),
            Err(Mismatch::Unsigned(_))
        ));
    }

    #[test]
    fn the_encoding_is_dsse_v1() {
        assert_eq!(
            pae("application/vnd.in-toto+json", b"{}"),
            b"DSSEv1 28 application/vnd.in-toto+json 2 {}".to_vec()
        );
    }
}
