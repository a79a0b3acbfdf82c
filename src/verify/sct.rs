//! The signed certificate timestamp Fulcio embeds in each signing certificate (RFC 6962,
//! section 3.3): a certificate transparency log's promise that the certificate is public. A
//! certificate issued outside the log (by a compromised authority, say) carries none.
//!
//! The log signed the precertificate: the certificate's to-be-signed part without this very
//! extension, with the SHA-256 of the issuer's public key. That structure is rebuilt here and
//! the signature checked with the key the trusted root gives for the log named by the SCT.

use sha2::{Digest as _, Sha256};
use x509_cert::Certificate;
use x509_cert::der::asn1::{ObjectIdentifier, OctetString};
use x509_cert::der::{Decode as _, Encode as _};

use super::trusted_root::TrustedRoot;

/// The embedded SCT list extension.
pub const SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
/// The most SCTs looked at in one certificate.
const MAX_SCTS: usize = 8;

/// Reads `n` bytes from the front of `input`.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Some(head)
}

/// A TLS vector with a `len`-byte length prefix.
fn vector<'a>(input: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    let n = take(input, len)?
        .iter()
        .fold(0usize, |n, b| (n << 8) | usize::from(*b));
    take(input, n)
}

/// One SCT, as RFC 6962's `SignedCertificateTimestamp` lays it out.
struct Sct<'a> {
    log_id: &'a [u8],
    timestamp: &'a [u8],
    extensions: &'a [u8],
    signature: &'a [u8],
}

fn parse(mut input: &[u8]) -> Option<Sct<'_>> {
    let version = take(&mut input, 1)?;
    if version != [0] {
        return None;
    }
    let log_id = take(&mut input, 32)?;
    let timestamp = take(&mut input, 8)?;
    let extensions = vector(&mut input, 2)?;
    // SHA-256 (4) with ECDSA (3): what Sigstore's CT logs sign with.
    let algorithms = take(&mut input, 2)?;
    if algorithms != [4, 3] {
        return None;
    }
    let signature = vector(&mut input, 2)?;
    input.is_empty().then_some(Sct {
        log_id,
        timestamp,
        extensions,
        signature,
    })
}

/// Whether `leaf`, issued by `issuer`, carries an SCT signed by a CT log of `root`. A root
/// that names no CT log (a private Sigstore without one) asks for none.
pub fn verify(leaf: &Certificate, issuer: &Certificate, root: &TrustedRoot) -> Result<(), String> {
    if root.ct_logs.is_empty() {
        return Ok(());
    }
    let extensions = leaf.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
    let raw = extensions
        .iter()
        .find(|e| e.extn_id == SCT_LIST)
        .ok_or("its certificate carries no signed certificate timestamp (SCT), which the trusted root's CT logs ask for")?;
    let list = OctetString::from_der(raw.extn_value.as_bytes())
        .map_err(|_| "its certificate's SCT list is not an octet string")?;
    let mut input = list.as_bytes();
    let mut scts = vector(&mut input, 2).ok_or("its certificate's SCT list does not parse")?;
    // The precertificate the log signed: this certificate without the SCT list.
    let mut tbs = leaf.tbs_certificate.clone();
    tbs.extensions = Some(
        extensions
            .iter()
            .filter(|e| e.extn_id != SCT_LIST)
            .cloned()
            .collect(),
    );
    let tbs = tbs.to_der().map_err(|e| e.to_string())?;
    let issuer_key = issuer
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())?;
    let issuer_key_hash = Sha256::digest(&issuer_key);
    let tbs_len = u32::try_from(tbs.len())
        .ok()
        .filter(|n| *n < 1 << 24)
        .ok_or("its certificate is too large for an SCT")?
        .to_be_bytes();
    let mut why = "its certificate's SCT does not parse";
    for _ in 0..MAX_SCTS {
        if scts.is_empty() {
            break;
        }
        let Some(one) = vector(&mut scts, 2) else {
            break;
        };
        let Some(sct) = parse(one) else {
            continue;
        };
        let log_id = crate::hex::encode(sct.log_id);
        let Some(log) = root.ct_logs.iter().find(|l| l.id == log_id) else {
            why = "its certificate's SCT is from a CT log the trusted root does not name";
            continue;
        };
        let mut signed = vec![0u8, 0u8]; // v1, certificate_timestamp
        signed.extend_from_slice(sct.timestamp);
        signed.extend_from_slice(&[0, 1]); // precert_entry
        signed.extend_from_slice(&issuer_key_hash);
        signed.extend_from_slice(&tbs_len[1..]);
        signed.extend_from_slice(&tbs);
        let ext_len = u16::try_from(sct.extensions.len()).unwrap_or(u16::MAX);
        signed.extend_from_slice(&ext_len.to_be_bytes());
        signed.extend_from_slice(sct.extensions);
        if log.key.verifies(&signed, sct.signature) {
            return Ok(());
        }
        why = "its certificate's SCT is not signed by the CT log it names";
    }
    Err(why.into())
}
