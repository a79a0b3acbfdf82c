//! cosign's signature payload, the "simple signing" format: a small JSON document that names
//! the exact manifest digest it signs. A signature only counts for the digest its payload
//! names, so a signature copied next to another image proves nothing about that image.

use serde::Deserialize;

/// The `type` cosign writes.
pub const TYPE: &str = "cosign container image signature";
/// The annotation on a payload's layer holding its base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// The digest a (verified) payload signs.
pub fn signed_digest(payload: &[u8]) -> Result<String, String> {
    let payload: Payload = serde_json::from_slice(payload)
        .map_err(|e| format!("the signed payload is not cosign's format: {e}"))?;
    if !payload.critical.kind.eq_ignore_ascii_case(TYPE) {
        return Err(format!(
            "the signed payload is of type `{}`, not `{TYPE}`",
            payload.critical.kind.escape_debug()
        ));
    }
    if !crate::reference::is_valid_digest(&payload.critical.image.digest) {
        return Err("the signed payload names no valid digest".into());
    }
    Ok(payload.critical.image.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_digest_is_read_and_checked() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let payload = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"r/x"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        assert_eq!(signed_digest(payload.as_bytes()).unwrap(), digest);
        let other = payload.replace("cosign container image signature", "something else");
        assert!(signed_digest(other.as_bytes()).is_err());
        let junk = payload.replace(&digest, "sha256:../../x");
        assert!(signed_digest(junk.as_bytes()).is_err());
        assert!(signed_digest(b"[]").is_err());
    }
}
