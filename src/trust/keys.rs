//! The public keys that may sign images.
//!
//! `cosign generate-key-pair` makes ECDSA P-256 keys and writes the public half as a PEM
//! `PUBLIC KEY` (SubjectPublicKeyInfo); cosign signs the SHA-256 of a payload and stores the
//! signature ASN.1 DER-encoded. Those are the keys and signatures accepted here. Each key is
//! known in messages by a short fingerprint, never by where it was read from.

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use sha2::Digest as _;

/// A key that may sign.
#[derive(Clone)]
pub struct PublicKey {
    key: VerifyingKey,
    /// `sha256:` and the first 12 hex digits of the SHA-256 of the key's compressed point.
    pub id: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

impl PublicKey {
    /// The key in a PEM `PUBLIC KEY` document.
    pub fn from_pem(text: &str) -> Result<PublicKey, KeyError> {
        let text = text.trim();
        if !text.starts_with("-----BEGIN PUBLIC KEY-----") {
            let hint = if text.contains("PRIVATE KEY") {
                "it is a private key: give the public half (cosign.pub)"
            } else {
                "it is not a PEM `PUBLIC KEY` (cosign.pub)"
            };
            return Err(KeyError(hint.into()));
        }
        let key = VerifyingKey::from_public_key_pem(text).map_err(|e| {
            KeyError(format!(
                "not an ECDSA P-256 public key, the kind `cosign generate-key-pair` makes ({e})"
            ))
        })?;
        let point = key.to_encoded_point(true);
        let id = crate::hex::encode(&sha2::Sha256::digest(point.as_bytes()));
        Ok(PublicKey {
            key,
            id: format!("sha256:{}", &id[..12]),
        })
    }

    /// Whether `signature` (DER, as cosign writes it) is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_der(signature) else {
            return false;
        };
        self.key.verify(message, &signature).is_ok()
    }

    /// Whether `signature` (DER) is this key's over the message whose SHA-256 is `digest`: a
    /// Sigstore bundle's message signature, which names the message only by its digest.
    pub fn verifies_prehash(&self, digest: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        Signature::from_der(signature).is_ok_and(|s| self.key.verify_prehash(digest, &s).is_ok())
    }
}

/// A key of the Sigstore services (certificate authorities, transparency logs) or of a signing
/// certificate: ECDSA on P-256 or P-384, from its SubjectPublicKeyInfo.
#[derive(Clone, Debug)]
pub enum AnyKey {
    P256(VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl AnyKey {
    pub fn from_spki_der(der: &[u8]) -> Result<AnyKey, KeyError> {
        if let Ok(key) = VerifyingKey::from_public_key_der(der) {
            return Ok(AnyKey::P256(key));
        }
        p384::ecdsa::VerifyingKey::from_public_key_der(der)
            .map(AnyKey::P384)
            .map_err(|_| KeyError("not an ECDSA P-256 or P-384 public key".into()))
    }

    /// Whether `signature` (DER) is this key's over the message whose hash is `digest`.
    pub fn verifies_prehash(&self, digest: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        match self {
            AnyKey::P256(key) => {
                Signature::from_der(signature).is_ok_and(|s| key.verify_prehash(digest, &s).is_ok())
            }
            AnyKey::P384(key) => p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| key.verify_prehash(digest, &s).is_ok()),
        }
    }

    /// Whether `signature` is this key's over the SHA-256 of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifies_prehash(&sha2::Sha256::digest(message), signature)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A signature made by cosign itself: the key, payload and signature of the image
    /// `ghcr.io/r3drun3/immunize/docker.io/library/node@sha256:19940c59…`, as published with
    /// `cosign verify`'s output in that project's README (github.com/r3drun3/immunize), where
    /// its transparency-log entry (Rekor, log index 63825695) records the payload's SHA-256
    /// (62c55fa4…), the signature and the key.
    pub const COSIGN_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE2ZobFTItyOXob9pKspR0aDSaXjVj
DEp8brDskB6OnMUx7GQEblD2RDBBmP5TAKvspay2syp4Z+5s2V69vS8OKg==
-----END PUBLIC KEY-----
";
    pub const COSIGN_PAYLOAD: &str = r#"{"critical":{"identity":{"docker-reference":"ghcr.io/r3drun3/immunize/docker.io/library/node"},"image":{"docker-manifest-digest":"sha256:19940c59087a363148b44c56447186d97d6afbc2165727b2d0a2ea0ce43b69fd"},"type":"cosign container image signature"},"optional":null}"#;
    pub const COSIGN_SIGNATURE: &str = "MEYCIQC1zu0j7Yz5KQjpaNlNy/FJTOqPgI8Dw+mTzgk8GbcWYgIhANPZO47LSoqo60bXYwxij5JACVlif6ivjS6UZFRL0wi3";

    fn signature() -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(COSIGN_SIGNATURE)
            .unwrap()
    }

    #[test]
    fn a_signature_cosign_made_verifies() {
        let payload_hash = crate::hex::encode(&sha2::Sha256::digest(COSIGN_PAYLOAD.as_bytes()));
        assert_eq!(
            payload_hash, "62c55fa4d1219a99eba293ca4c3b6ab7f5cd16a9b1f2f69ea49f3cdd8dc88870",
            "the payload is the one the transparency log recorded"
        );
        let key = PublicKey::from_pem(COSIGN_KEY).unwrap();
        assert!(key.verifies(COSIGN_PAYLOAD.as_bytes(), &signature()));
        // One byte changed in the payload, or in the signature: no longer.
        let tampered = COSIGN_PAYLOAD.replace("19940c59", "19940c5a");
        assert!(!key.verifies(tampered.as_bytes(), &signature()));
        let mut bad = signature();
        bad[10] ^= 1;
        assert!(!key.verifies(COSIGN_PAYLOAD.as_bytes(), &bad));
        assert!(!key.verifies(COSIGN_PAYLOAD.as_bytes(), b"not der"));
    }

    #[test]
    fn keys_that_are_not_cosign_public_keys_are_refused() {
        assert!(
            PublicKey::from_pem(
                "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----"
            )
            .unwrap_err()
            .to_string()
            .contains("private key")
        );
        assert!(PublicKey::from_pem("hello").is_err());
        let broken = COSIGN_KEY.replace("MFkw", "MFkx");
        assert!(PublicKey::from_pem(&broken).is_err());
        let id = PublicKey::from_pem(COSIGN_KEY).unwrap().id;
        assert!(id.starts_with("sha256:") && id.len() == 19, "{id}");
    }
}
