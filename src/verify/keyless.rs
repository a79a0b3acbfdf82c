//! Keyless signatures: cosign signed with a short-lived key whose certificate, issued by a
//! Sigstore certificate authority (Fulcio), names who signed (an email address, or a CI
//! workflow's URI) and which OIDC issuer vouched for them.
//!
//! A signature counts when its certificate chains to an authority in the trusted root, names
//! the configured identity and issuer, and was valid when the payload was signed. When the
//! signature carries cosign's offline bundle (a transparency log's signed timestamp of the
//! entry), the bundle is verified with the log's key from the trusted root, it must record this
//! very signature, payload hash and certificate, and its time is the signing time. Without a
//! bundle the certificate must be valid now: nothing is fetched from a transparency log.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;
use x509_cert::Certificate;
use x509_cert::der::asn1::{Ia5String, ObjectIdentifier};
use x509_cert::der::{Decode as _, Encode as _};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use super::keys::AnyKey;
use super::trusted_root::{Authority, Log, TrustedRoot};
use crate::config::Keyless;

/// Where cosign puts a keyless signature's certificate (PEM), and its offline bundle (JSON).
pub const CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
pub const BUNDLE: &str = "dev.sigstore.cosign/bundle";
/// The longest certificate or bundle annotation looked at.
const MAX_ANNOTATION: usize = 64 << 10;

const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
/// Fulcio's OIDC issuer extension: DER UTF8String (current), and raw text (the first one).
const ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
const ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// One signature with what cosign annotated on it.
pub struct Signed<'a> {
    pub payload: &'a [u8],
    /// DER, as the layer's annotation holds it in base64.
    pub signature: &'a [u8],
    pub annotations: &'a HashMap<String, String>,
}

/// Whether `signed` is a keyless signature meeting `rule` under `root`, checked at `now`
/// (seconds since the epoch) when it has no bundle: `Ok` describes the signer.
pub fn check(
    signed: &Signed,
    rule: &Keyless,
    root: &TrustedRoot,
    now: i64,
) -> Result<String, String> {
    let pem = signed
        .annotations
        .get(CERTIFICATE)
        .filter(|p| p.len() <= MAX_ANNOTATION)
        .ok_or("no certificate")?;
    let leaf = certificate(pem.as_bytes()).map_err(|e| format!("its certificate {e}"))?;
    if !leaf_key(&leaf)?.verifies(signed.payload, signed.signature) {
        return Err("not signed by its certificate's key".into());
    }
    let logged = match signed.annotations.get(BUNDLE) {
        Some(bundle) => vec![bundle_time(bundle, signed, &leaf, root)?],
        None => Vec::new(),
    };
    certified(&leaf, &logged, rule, root, now)
}

/// The key of a signing certificate.
pub fn leaf_key(leaf: &Certificate) -> Result<AnyKey, String> {
    let spki = leaf
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())?;
    AnyKey::from_spki_der(&spki).map_err(|e| format!("its certificate's key: {e}"))
}

/// Whether `leaf`, whose key made a signature, meets `rule` under `root`: issued by a trusted
/// authority (with a CT log's timestamp, when the root names CT logs), naming the identity and
/// issuer, and valid when it signed. The signing times are `times` (a transparency log's, a
/// timestamp authority's, already verified; it must be valid at each), or else `now`.
pub fn certified(
    leaf: &Certificate,
    times: &[i64],
    rule: &Keyless,
    root: &TrustedRoot,
    now: i64,
) -> Result<String, String> {
    let tbs = &leaf.tbs_certificate;
    let logged = !times.is_empty();
    let now = [now];
    let times = if logged { times } else { &now[..] };
    let ca = issuer(leaf, &root.authorities, times[0])
        .map_err(|e| format!("its certificate was {e}"))?;
    super::sct::verify(leaf, ca, root)?;
    let identities = identities(leaf);
    if !identities.contains(&rule.identity) {
        return Err(format!(
            "signed by {}, not {}",
            if identities.is_empty() {
                "a certificate without an identity".to_string()
            } else {
                identities.join(", ")
            },
            rule.identity
        ));
    }
    let issuer = oidc_issuer(leaf).unwrap_or_default();
    if issuer != rule.issuer {
        return Err(format!(
            "{} was vouched for by `{}`, not `{}`",
            rule.identity,
            issuer.escape_debug(),
            rule.issuer
        ));
    }
    let from = seconds(&tbs.validity.not_before);
    let until = seconds(&tbs.validity.not_after);
    if let Some(outside) = times.iter().find(|t| **t < from || **t > until) {
        return Err(if logged {
            format!(
                "signed at {}, outside its certificate's validity",
                at(*outside)
            )
        } else {
            format!(
                "its certificate is valid {} to {}, and no transparency-log entry or timestamp shows when it signed",
                at(from),
                at(until)
            )
        });
    }
    Ok(format!("{} ({issuer})", rule.identity))
}

/// A PEM certificate as cosign and Rekor accept it: Go's PEM decoder takes the base64 body on
/// lines of any length (a Rekor entry made by other clients has it on one line), where RFC 7468's
/// strict form wants lines of 64. The DER inside is what is compared and verified.
pub fn certificate(pem: &[u8]) -> Result<Certificate, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "is not PEM text".to_string())?;
    let begin = "-----BEGIN CERTIFICATE-----";
    let end = "-----END CERTIFICATE-----";
    let body = text
        .trim()
        .strip_prefix(begin)
        .and_then(|rest| rest.split_once(end))
        .map(|(body, _)| body)
        .ok_or_else(|| "is not a PEM certificate".to_string())?;
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| "is not base64 inside its PEM armor".to_string())?;
    Certificate::from_der(&der).map_err(|e| format!("does not parse: {e}"))
}

fn seconds(time: &x509_cert::time::Time) -> i64 {
    i64::try_from(time.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

fn at(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

/// The email addresses and URIs the certificate is for.
fn identities(cert: &Certificate) -> Vec<String> {
    let Some(ext) = extension(cert, SUBJECT_ALT_NAME) else {
        return Vec::new();
    };
    let Ok(names) = SubjectAltName::from_der(ext) else {
        return Vec::new();
    };
    let text = |s: &Ia5String| s.to_string();
    names
        .0
        .iter()
        .filter_map(|n| match n {
            GeneralName::Rfc822Name(s) | GeneralName::UniformResourceIdentifier(s) => Some(text(s)),
            _ => None,
        })
        .collect()
}

fn oidc_issuer(cert: &Certificate) -> Option<String> {
    if let Some(v) = extension(cert, ISSUER_V2) {
        return String::from_der(v).ok();
    }
    extension(cert, ISSUER_V1).and_then(|v| String::from_utf8(v.to_vec()).ok())
}

fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&[u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// The certificate of one of `authorities`, valid at `time`, that issued (signed) `leaf`.
pub fn issuer<'a>(
    leaf: &Certificate,
    authorities: &'a [Authority],
    time: i64,
) -> Result<&'a Certificate, String> {
    let tbs = leaf.tbs_certificate.to_der().map_err(|e| e.to_string())?;
    let digest: Vec<u8> = match leaf.signature_algorithm.oid {
        ECDSA_SHA256 => sha2::Sha256::digest(&tbs).to_vec(),
        ECDSA_SHA384 => sha2::Sha384::digest(&tbs).to_vec(),
        other => return Err(format!("signed with {other}, not ECDSA")),
    };
    let signature = leaf.signature.raw_bytes();
    for authority in authorities {
        if authority.valid_from.is_some_and(|f| time < f)
            || authority.valid_until.is_some_and(|u| time > u)
        {
            continue;
        }
        for ca in &authority.certificates {
            if ca.tbs_certificate.subject != leaf.tbs_certificate.issuer {
                continue;
            }
            let Ok(spki) = ca.tbs_certificate.subject_public_key_info.to_der() else {
                continue;
            };
            if AnyKey::from_spki_der(&spki).is_ok_and(|k| k.verifies_prehash(&digest, signature)) {
                return Ok(ca);
            }
        }
    }
    Err("not issued by an authority of the trusted root".into())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Bundle {
    signed_entry_timestamp: String,
    payload: BundlePayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundlePayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

/// A transparency log's promise to include an entry: the entry, and the log's signature over
/// it (Rekor's signed entry timestamp).
pub struct Promise<'a> {
    /// The entry's canonical body, base64.
    pub body: &'a str,
    pub integrated_time: i64,
    pub log_index: i64,
    /// The log's id, hex.
    pub log_id: &'a str,
    /// The log's signature, DER.
    pub signed_entry_timestamp: &'a [u8],
}

/// The transparency log of `root` whose id (hex) is `id`; `named` is how messages name the
/// entry that names it.
pub fn log_of<'a>(root: &'a TrustedRoot, id: &str, named: &str) -> Result<&'a Log, String> {
    root.logs
        .iter()
        .find(|l| l.id == id)
        .ok_or_else(|| format!("{named} is from a log the trusted root does not name"))
}

/// Whether `log` signed `promise`: Rekor signs the entry's canonical JSON (keys sorted, no
/// spaces).
pub fn promise_kept(promise: &Promise, log: &Log) -> bool {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let canonical = format!(
        r#"{{"body":{},"integratedTime":{},"logID":{},"logIndex":{}}}"#,
        quoted(promise.body),
        promise.integrated_time,
        quoted(promise.log_id),
        promise.log_index
    );
    log.key
        .verifies(canonical.as_bytes(), promise.signed_entry_timestamp)
}

/// Whether a Rekor `hashedrekord` entry records `signature`, over the message whose SHA-256 is
/// `digest`, by `leaf`: cosign's offline bundles and Sigstore bundles' message signatures are
/// logged as this kind of entry.
pub fn records_hashed(
    entry: &serde_json::Value,
    digest: &[u8],
    signature: &[u8],
    leaf: &Certificate,
) -> bool {
    let spec = &entry["spec"];
    let logged_signature = spec["signature"]["content"]
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
    entry["kind"] == "hashedrekord"
        && spec["data"]["hash"]["algorithm"] == "sha256"
        && spec["data"]["hash"]["value"] == crate::hex::encode(digest)
        && logged_signature.as_deref() == Some(signature)
        && logged_certificate(&spec["signature"]["publicKey"]["content"]).as_ref() == Some(leaf)
}

/// A certificate as a transparency-log entry records it: base64 of its PEM.
pub fn logged_certificate(value: &serde_json::Value) -> Option<Certificate> {
    value
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .and_then(|pem| certificate(&pem).ok())
}

/// The time a transparency log recorded the signature, from cosign's offline bundle, once the
/// log's signature over it is verified and the entry is this signature's.
fn bundle_time(
    text: &str,
    signed: &Signed,
    leaf: &Certificate,
    root: &TrustedRoot,
) -> Result<i64, String> {
    if text.len() > MAX_ANNOTATION {
        return Err("its bundle is too large".into());
    }
    let bundle: Bundle =
        serde_json::from_str(text).map_err(|e| format!("its bundle does not parse: {e}"))?;
    let p = &bundle.payload;
    let b64 = base64::engine::general_purpose::STANDARD;
    let set = b64
        .decode(&bundle.signed_entry_timestamp)
        .map_err(|_| "its bundle's timestamp is not base64")?;
    let log = log_of(root, &p.log_id, "its bundle")?;
    let promise = Promise {
        body: &p.body,
        integrated_time: p.integrated_time,
        log_index: p.log_index,
        log_id: &p.log_id,
        signed_entry_timestamp: &set,
    };
    if !promise_kept(&promise, log) {
        return Err("its bundle is not signed by the log".into());
    }
    let body = b64
        .decode(&p.body)
        .map_err(|_| "its bundle is not base64")?;
    let entry: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| "its bundle is not JSON")?;
    // The entry must be this signature, of this payload, by this certificate.
    let same = records_hashed(
        &entry,
        &sha2::Sha256::digest(signed.payload),
        signed.signature,
        leaf,
    );
    if !same {
        return Err("its bundle records another signature".into());
    }
    Ok(p.integrated_time)
}
