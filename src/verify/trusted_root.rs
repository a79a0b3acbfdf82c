//! The trust material for keyless signatures: Sigstore's `trusted_root.json` (what `cosign
//! verify --trusted-root` reads, and what the Sigstore project publishes), given as a file so
//! that nothing is fetched at verification time.
//!
//! Two parts are used: the certificate authorities (Fulcio) that issue signing certificates,
//! each a chain of certificates valid for a time range; and the transparency logs (Rekor)
//! whose public keys sign the timestamps in cosign's offline bundles, each known by its log id
//! (the SHA-256 of its public key).

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
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    certificate_authorities: Vec<RawAuthority>,
    #[serde(default)]
    tlogs: Vec<RawLog>,
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
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
        let mut authorities = Vec::new();
        for a in raw.certificate_authorities {
            let certificates = a
                .cert_chain
                .certificates
                .iter()
                .map(|c| {
                    let der = b64
                        .decode(&c.raw_bytes)
                        .map_err(|_| "a certificate is not base64".to_string())?;
                    Certificate::from_der(&der)
                        .map_err(|e| format!("a certificate does not parse: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let range = a.valid_for.as_ref();
            authorities.push(Authority {
                certificates,
                valid_from: time(range.and_then(|r| r.start.as_ref()))?,
                valid_until: time(range.and_then(|r| r.end.as_ref()))?,
            });
        }
        let mut logs = Vec::new();
        for l in raw.tlogs {
            let der = b64
                .decode(&l.public_key.raw_bytes)
                .map_err(|_| "a log key is not base64".to_string())?;
            let key = AnyKey::from_spki_der(&der)
                .map_err(|e| format!("a transparency log's key: {e}"))?;
            let id = b64
                .decode(&l.log_id.key_id)
                .map_err(|_| "a log id is not base64".to_string())?;
            logs.push(Log {
                id: crate::hex::encode(&id),
                key,
            });
        }
        if authorities.is_empty() {
            return Err("it names no certificate authority".into());
        }
        Ok(TrustedRoot { authorities, logs })
    }
}
