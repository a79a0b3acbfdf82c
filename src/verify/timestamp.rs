//! RFC 3161 timestamps: a timestamp authority's signed statement that a signature existed at a
//! time (its `genTime`). Rekor v2 gives no signed time of its own, so a Sigstore bundle's time
//! can come from here, from an authority of the trusted root.
//!
//! A timestamp counts when: the response is granted; its token is CMS SignedData whose content
//! is a TSTInfo; the TSTInfo's message imprint is the hash of the signature being timestamped;
//! the signer's signed attributes name the TSTInfo's digest; and their signature is the key's
//! of a timestamp authority of the trusted root, valid (the authority and its certificate) at
//! `genTime`.

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use x509_cert::Certificate;
use x509_cert::der::asn1::{Any, ObjectIdentifier, OctetString};
use x509_cert::der::{Decode, Encode as _, SliceReader, Tag, Tagged as _};
use x509_cert::spki::AlgorithmIdentifierOwned;

use super::keys::AnyKey;
use super::trusted_root::TrustedRoot;

const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// The largest timestamp response read.
pub const MAX_BYTES: usize = 16 << 10;

fn hash(algorithm: &ObjectIdentifier, data: &[u8]) -> Option<Vec<u8>> {
    match *algorithm {
        SHA256 => Some(Sha256::digest(data).to_vec()),
        SHA384 => Some(Sha384::digest(data).to_vec()),
        SHA512 => Some(Sha512::digest(data).to_vec()),
        _ => None,
    }
}

/// The time (seconds since the epoch) at which the timestamp response `der` says `signature`
/// existed, once it is verified against the trusted root's timestamp authorities.
pub fn verify(der: &[u8], signature: &[u8], root: &TrustedRoot) -> Result<i64, String> {
    if der.len() > MAX_BYTES {
        return Err("its timestamp is too large".into());
    }
    // TimeStampResp ::= SEQUENCE { status PKIStatusInfo, timeStampToken ContentInfo OPTIONAL }
    let response = fields(der).ok_or("its timestamp does not parse")?;
    let status = response
        .first()
        .and_then(|s| fields(&s.to_der().ok()?))
        .and_then(|s| s.first().and_then(|n| n.decode_as::<u8>().ok()))
        .ok_or("its timestamp's status does not parse")?;
    // granted (0) or granted with modifications (1)
    if status > 1 {
        return Err("its timestamp was not granted".into());
    }
    let token: ContentInfo = response
        .get(1)
        .and_then(|t| t.decode_as().ok())
        .ok_or("its timestamp response holds no token")?;
    if token.content_type != SIGNED_DATA {
        return Err("its timestamp token is not CMS signed data".into());
    }
    let signed: SignedData = token
        .content
        .decode_as()
        .map_err(|e| format!("its timestamp's signed data does not parse: {e}"))?;
    let content = &signed.encap_content_info;
    if content.econtent_type != TST_INFO {
        return Err("its timestamp token holds no TSTInfo".into());
    }
    let tst_der = content
        .econtent
        .as_ref()
        .and_then(|any| any.decode_as::<OctetString>().ok())
        .ok_or("its timestamp token's TSTInfo is missing")?;
    let tst_der = tst_der.as_bytes();
    // TSTInfo ::= SEQUENCE { version, policy, messageImprint, serialNumber, genTime, ... }
    let tst = fields(tst_der).ok_or("its TSTInfo does not parse")?;
    let (Some(imprint), Some(gen_time)) = (tst.get(2), tst.get(4)) else {
        return Err("its TSTInfo does not parse".into());
    };
    // MessageImprint ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, hashedMessage OCTET STRING }
    let imprint = fields(&imprint.to_der().map_err(|e| e.to_string())?)
        .filter(|f| f.len() == 2)
        .ok_or("its TSTInfo's message imprint does not parse")?;
    let algorithm: AlgorithmIdentifierOwned = imprint[0]
        .decode_as()
        .map_err(|_| "its TSTInfo's hash algorithm does not parse")?;
    let hashed: OctetString = imprint[1]
        .decode_as()
        .map_err(|_| "its TSTInfo's hashed message does not parse")?;
    // What was timestamped: this signature.
    let expected = hash(&algorithm.oid, signature)
        .ok_or("its timestamp hashes with an algorithm not accepted")?;
    if hashed.as_bytes() != expected.as_slice() {
        return Err("its timestamp is of another signature".into());
    }
    if gen_time.tag() != Tag::GeneralizedTime {
        return Err("its TSTInfo's time is not a GeneralizedTime".into());
    }
    let time = generalized_time(gen_time.value()).ok_or("its TSTInfo's time does not parse")?;
    // Who signed it: a timestamp authority of the trusted root, valid then.
    let signer = signed
        .signer_infos
        .0
        .iter()
        .next()
        .ok_or("its timestamp token has no signer")?;
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or("its timestamp's signer has no signed attributes")?;
    let attribute = |oid: ObjectIdentifier| {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.iter().next())
    };
    if attribute(CONTENT_TYPE)
        .and_then(|v| v.decode_as::<ObjectIdentifier>().ok())
        .is_none_or(|t| t != TST_INFO)
    {
        return Err("its timestamp's signed content type is not TSTInfo".into());
    }
    let digest = attribute(MESSAGE_DIGEST)
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .ok_or("its timestamp's signer names no message digest")?;
    if hash(&signer.digest_alg.oid, tst_der).as_deref() != Some(digest.as_bytes()) {
        return Err("its timestamp's signature is over another TSTInfo".into());
    }
    let signed_attrs = attrs.to_der().map_err(|e| e.to_string())?;
    let prehash = match signer.signature_algorithm.oid {
        ECDSA_SHA256 => Sha256::digest(&signed_attrs).to_vec(),
        ECDSA_SHA384 => Sha384::digest(&signed_attrs).to_vec(),
        other => return Err(format!("its timestamp is signed with {other}, not ECDSA")),
    };
    let signature_value = signer.signature.as_bytes();
    let leaf = tsa_certificate(&signer.sid, root, time)?;
    let spki = leaf
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| e.to_string())?;
    let key =
        AnyKey::from_spki_der(&spki).map_err(|e| format!("its timestamp authority's key: {e}"))?;
    if !key.verifies_prehash(&prehash, signature_value) {
        return Err("its timestamp is not signed by its timestamp authority".into());
    }
    Ok(time)
}

/// The certificate of a trusted timestamp authority, valid at `time`, that `sid` names: the
/// first of an authority's chain (its leaf).
fn tsa_certificate<'a>(
    sid: &SignerIdentifier,
    root: &'a TrustedRoot,
    time: i64,
) -> Result<&'a Certificate, String> {
    for authority in &root.timestamp_authorities {
        if authority.valid_from.is_some_and(|f| time < f)
            || authority.valid_until.is_some_and(|u| time > u)
        {
            continue;
        }
        let Some(leaf) = authority.certificates.first() else {
            continue;
        };
        let named = match sid {
            SignerIdentifier::IssuerAndSerialNumber(id) => {
                id.issuer == leaf.tbs_certificate.issuer
                    && id.serial_number == leaf.tbs_certificate.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(_) => true,
        };
        let validity = &leaf.tbs_certificate.validity;
        let from =
            i64::try_from(validity.not_before.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
        let until =
            i64::try_from(validity.not_after.to_unix_duration().as_secs()).unwrap_or(i64::MIN);
        if named && from <= time && time <= until {
            return Ok(leaf);
        }
    }
    Err(
        "its timestamp is not from a timestamp authority of the trusted root valid at its time"
            .into(),
    )
}

/// The DER fields of the SEQUENCE `der`.
fn fields(der: &[u8]) -> Option<Vec<Any>> {
    let sequence = Any::from_der(der).ok()?;
    if sequence.tag() != Tag::Sequence {
        return None;
    }
    let mut reader = SliceReader::new(sequence.value()).ok()?;
    let mut out = Vec::new();
    while !x509_cert::der::Reader::is_finished(&reader) {
        out.push(Any::decode(&mut reader).ok()?);
        if out.len() > 16 {
            return None;
        }
    }
    Some(out)
}

/// Seconds since the epoch of a GeneralizedTime's text, `YYYYMMDDHHMMSS[.f*]Z`: RFC 3161 allows
/// the fraction that DER's profile for certificates does not (and timestamp authorities use it).
fn generalized_time(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    if whole.len() != 14
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &whole[0..4],
        &whole[4..6],
        &whole[6..8],
        &whole[8..10],
        &whole[10..12],
        &whole[12..14]
    );
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

#[cfg(test)]
mod tests {
    use super::generalized_time;

    #[test]
    fn times_with_and_without_a_fraction() {
        assert_eq!(
            generalized_time(b"20261206124334.411Z"),
            Some(1_796_561_014)
        );
        assert_eq!(generalized_time(b"20261206124334Z"), Some(1_796_561_014));
        for bad in [
            &b"20261306124334Z"[..],
            b"20261206124334",
            b"2026120612433Z",
            b"20261206124334.x1Z",
            b"20261232124334Z",
        ] {
            assert_eq!(
                generalized_time(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
