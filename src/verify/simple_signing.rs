//! cosign's signature payload, the "simple signing" format: a small JSON document that names
//! the exact manifest digest it signs. A signature only counts for the digest its payload
//! names, so a signature copied next to another image proves nothing about that image.

use serde_json::{Map, Value};

/// The `type` cosign writes.
pub const TYPE: &str = "cosign container image signature";
/// The annotation on a payload's layer holding its base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The value of `key` in `object`, its name matched without regard to ASCII case, as cosign's
/// decoder (Go's `encoding/json`) matches it: SIGNATURE_SPEC.md's own example spells it
/// `Docker-manifest-digest`. Two keys that differ only in case are refused: which one counts
/// would depend on the reader.
fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Result<Option<&'a Value>, String> {
    let mut found = object.iter().filter(|(k, _)| k.eq_ignore_ascii_case(key));
    match (found.next(), found.next()) {
        (Some((_, v)), None) => Ok(Some(v)),
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(format!(
            "the signed payload has `{key}` twice, in different cases"
        )),
    }
}

/// The object at `key` of `object`, or why there is none.
fn object<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a Map<String, Value>, String> {
    field(object, key)?
        .and_then(Value::as_object)
        .ok_or_else(|| format!("the signed payload is not cosign's format: no `{key}` object"))
}

/// The digest a (verified) payload signs.
pub fn signed_digest(payload: &[u8]) -> Result<String, String> {
    let root: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("the signed payload is not cosign's format: {e}"))?;
    let root = root
        .as_object()
        .ok_or("the signed payload is not cosign's format: not a JSON object")?;
    let critical = object(root, "critical")?;
    let kind = field(critical, "type")?
        .and_then(Value::as_str)
        .ok_or("the signed payload is not cosign's format: no `type`")?;
    if !kind.eq_ignore_ascii_case(TYPE) {
        return Err(format!(
            "the signed payload is of type `{}`, not `{TYPE}`",
            kind.escape_debug()
        ));
    }
    let digest = field(object(critical, "image")?, "docker-manifest-digest")?
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !crate::reference::is_valid_digest(digest) {
        return Err("the signed payload names no valid digest".into());
    }
    Ok(digest.to_string())
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

    #[test]
    fn keys_match_in_any_case_as_cosign_decodes_them() {
        let digest = format!("sha256:{}", "cd".repeat(32));
        // SIGNATURE_SPEC.md's example spells the digest's key with a capital D.
        let spec = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"r/x"}},"image":{{"Docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        assert_eq!(signed_digest(spec.as_bytes()).unwrap(), digest);
        let shouted = spec
            .replace("critical", "Critical")
            .replace("\"type\"", "\"TYPE\"");
        assert_eq!(signed_digest(shouted.as_bytes()).unwrap(), digest);
        // Two spellings of one key: ambiguous, refused.
        let twice = spec.replace(
            r#""Docker-manifest-digest""#,
            &format!(
                r#""docker-manifest-digest":"sha256:{}","Docker-manifest-digest""#,
                "ef".repeat(32)
            ),
        );
        assert!(
            signed_digest(twice.as_bytes())
                .unwrap_err()
                .contains("twice")
        );
    }
}
