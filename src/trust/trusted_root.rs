//! The trust material for keyless signatures: Sigstore's `trusted_root.json` (what `cosign
//! verify --trusted-root` reads, and what the Sigstore project publishes), given as a file so
//! that nothing is fetched at verification time.
//!
//! Four parts are used: the certificate authorities (Fulcio) that issue signing certificates,
//! each a chain of certificates valid for a time range; the transparency logs (Rekor) whose
//! public keys sign entry timestamps and checkpoints, each known by its log id (the SHA-256 of
//! its public key); the certificate transparency logs whose signed certificate timestamps
//! Fulcio embeds in each certificate, known the same way; and the timestamp authorities whose
//! RFC 3161 timestamps say when a signature existed.

use base64::Engine as _;
use serde::Deserialize;
use x509_cert::Certificate;
use x509_cert::der::Decode as _;

use super::keys::AnyKey;

/// The largest trusted root read.
pub const MAX_BYTES: usize = 1 << 20;

/// A certificate authority: the certificates that may issue signing certificates.
#[derive(Debug, Clone)]
pub struct Authority {
    pub certificates: Vec<Certificate>,
    /// Seconds since the epoch; `None`: open-ended.
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
}

/// A transparency log's key, by the log's id (hex).
#[derive(Debug, Clone)]
pub struct Log {
    pub id: String,
    pub key: AnyKey,
}

#[derive(Debug, Clone)]
pub struct TrustedRoot {
    pub authorities: Vec<Authority>,
    pub logs: Vec<Log>,
    /// Certificate transparency logs. When the root names any, a signing certificate must
    /// carry a timestamp signed by one of them.
    pub ct_logs: Vec<Log>,
    /// RFC 3161 timestamp authorities: a chain each, leaf first.
    pub timestamp_authorities: Vec<Authority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    certificate_authorities: Vec<RawAuthority>,
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    ctlogs: Vec<RawLog>,
    #[serde(default)]
    timestamp_authorities: Vec<RawAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuthority {
    cert_chain: RawChain,
    #[serde(default)]
    valid_for: Option<RawRange>,
}

#[derive(Deserialize)]
struct RawChain {
    certificates: Vec<RawBytes>,
}

/// DER in Sigstore's protobuf JSON: `{"rawBytes": "<base64>"}`, in trusted roots and bundles.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawBytes {
    raw_bytes: String,
}

impl RawBytes {
    /// The certificate these bytes hold.
    pub(crate) fn certificate(&self) -> Result<Certificate, String> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(&self.raw_bytes)
            .map_err(|_| "a certificate is not base64".to_string())?;
        Certificate::from_der(&der).map_err(|e| format!("a certificate does not parse: {e}"))
    }
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    public_key: RawKey,
    log_id: RawLogId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKey {
    raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

fn time(text: Option<&String>) -> Result<Option<i64>, String> {
    text.map(|t| {
        t.parse::<jiff::Timestamp>()
            .map(|t| t.as_second())
            .map_err(|e| format!("`{}` is not a time: {e}", t.escape_debug()))
    })
    .transpose()
}

impl TrustedRoot {
    pub fn parse(text: &str) -> Result<TrustedRoot, String> {
        if text.len() > MAX_BYTES {
            return Err(format!("larger than {MAX_BYTES} bytes"));
        }
        let raw: Raw = serde_json::from_str(text)
            .map_err(|e| format!("not a Sigstore trusted_root.json: {e}"))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let authority = |a: &RawAuthority| -> Result<Authority, String> {
            let certificates = a
                .cert_chain
                .certificates
                .iter()
                .map(RawBytes::certificate)
                .collect::<Result<Vec<_>, _>>()?;
            let range = a.valid_for.as_ref();
            Ok(Authority {
                certificates,
                valid_from: time(range.and_then(|r| r.start.as_ref()))?,
                valid_until: time(range.and_then(|r| r.end.as_ref()))?,
            })
        };
        let log = |l: &RawLog| -> Result<Log, String> {
            let der = b64
                .decode(&l.public_key.raw_bytes)
                .map_err(|_| "a log key is not base64".to_string())?;
            let key = AnyKey::from_spki_der(&der).map_err(|e| format!("a log's key: {e}"))?;
            let id = b64
                .decode(&l.log_id.key_id)
                .map_err(|_| "a log id is not base64".to_string())?;
            Ok(Log {
                id: crate::hex::encode(&id),
                key,
            })
        };
        let authorities = raw
            .certificate_authorities
            .iter()
            .map(authority)
            .collect::<Result<Vec<_>, _>>()?;
        let timestamp_authorities = raw
            .timestamp_authorities
            .iter()
            .map(authority)
            .collect::<Result<Vec<_>, _>>()?;
        let logs = raw.tlogs.iter().map(log).collect::<Result<Vec<_>, _>>()?;
        let ct_logs = raw.ctlogs.iter().map(log).collect::<Result<Vec<_>, _>>()?;
        if authorities.is_empty() {
            return Err("it names no certificate authority".into());
        }
        Ok(TrustedRoot {
            authorities,
            logs,
            ct_logs,
            timestamp_authorities,
        })
    }
}
