//! `verify` (at an image or under `[images.ALIAS.env.ENV]`): the cosign keys that must have
//! signed a digest, and an optional attestation rule. A key kept in a file is read now, so a
//! path that is wrong or a file that is not a cosign public key is reported at the key, not
//! found at the first poll.
//!
//! A rule as written ([`RawVerify`]), as validated ([`Verification`]: keys that parse, a
//! keyless identity with its issuer and trusted root), and the checks between them, together
//! in this file.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::credentials::CredentialRef;
use super::diagnostic::Origin;
use super::validator::{Str, Validator, at};
use crate::trust::keys::PublicKey;
use crate::trust::trusted_root::TrustedRoot;

// ---- As written ----

/// `verify`: the keys that must have signed a digest before it is written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawVerify {
    /// A credential reference to a cosign public key (PEM).
    #[schemars(with = "Option<String>")]
    pub cosign_key: Option<Str>,
    /// Several, any of which may sign.
    #[schemars(with = "Option<Vec<String>>")]
    pub cosign_keys: Option<Spanned<Vec<Str>>>,
    /// Keyless: the signing certificate's email address or URI.
    #[schemars(with = "Option<String>")]
    pub certificate_identity: Option<Str>,
    /// Keyless: the OIDC issuer named in the certificate.
    #[schemars(with = "Option<String>")]
    pub certificate_oidc_issuer: Option<Str>,
    /// Keyless: a credential reference to Sigstore's trusted_root.json.
    #[schemars(with = "Option<String>")]
    pub trusted_root: Option<Str>,
    #[schemars(with = "Option<RawAttestation>")]
    pub attestation: Option<Spanned<RawAttestation>>,
}

/// `verify.attestation`: an in-toto attestation the keys must also have signed.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawAttestation {
    #[schemars(with = "Option<String>")]
    pub predicate_type: Option<Str>,
    /// A dotted path into the statement (`predicate.builder.id`).
    #[schemars(with = "Option<String>")]
    pub field: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub equals: Option<Str>,
}

// ---- As validated ----

/// `verify`: who must have signed an image before it is written. A digest is written only
/// when one of `keys` signed exactly it (cosign's signature), and, with `attestation`, when one
/// of them also attested it as the rule asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Verification {
    /// cosign public keys (PEM), any of which may sign.
    pub keys: Vec<CredentialRef>,
    /// Or a keyless signature by this identity.
    pub keyless: Option<Keyless>,
    pub attestation: Option<AttestationRule>,
}

/// A keyless (Fulcio certificate) signer that may sign.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Keyless {
    /// The certificate's email address or URI, exactly.
    pub identity: String,
    /// The OIDC issuer that vouched for it (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// Sigstore's `trusted_root.json`: the certificate authorities and transparency logs.
    pub trusted_root: CredentialRef,
}

/// An in-toto attestation that must accompany the signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttestationRule {
    /// `https://slsa.dev/provenance/v1`, `https://spdx.dev/Document`, …
    pub predicate_type: String,
    /// A field of the statement, as a dotted path from its top (`predicate.builder.id`), and
    /// the value it must have.
    pub field: Option<(String, String)>,
}

// ---- The checks ----

/// The most keys one rule may list.
const MAX_KEYS: usize = 16;

impl Validator<'_> {
    pub(super) fn verification(&mut self, raw: &Spanned<RawVerify>) -> Option<Verification> {
        let r = raw.get_ref();
        let mut written: Vec<&Str> = r.cosign_key.iter().collect();
        if let Some(list) = &r.cosign_keys {
            written.extend(list.get_ref());
            if list.get_ref().len() > MAX_KEYS {
                self.error(
                    Origin::File(list.span()),
                    format!("cosign_keys lists more than {MAX_KEYS} keys"),
                );
                return None;
            }
        }
        let mut bad = false;
        let keyless = self.keyless(raw, &mut bad);
        if written.is_empty() && keyless.is_none() && !bad {
            self.error_hint(
                Origin::File(raw.span()),
                "verify names no key",
                "add cosign_key = \"file:/etc/image-updater/cosign.pub\" (or cosign_keys = [...], or certificate_identity, certificate_oidc_issuer and trusted_root for keyless signatures)",
            );
            bad = true;
        }
        let mut keys = Vec::new();
        for text in written {
            match self.parse(text, "cosign_key", CredentialRef::parse) {
                Some(CredentialRef::DockerConfig(_)) => {
                    self.error(
                        at(text),
                        "cosign_key: docker's config holds registry logins, not keys: use file:, env: or exec:",
                    );
                    bad = true;
                }
                Some(reference) => {
                    if let CredentialRef::File(path) = &reference
                        && let Err(why) = std::fs::read_to_string(path)
                            .map_err(|e| format!("cannot read {}: {e}", path.display()))
                            .and_then(|pem| PublicKey::from_pem(&pem).map_err(|e| e.to_string()))
                    {
                        self.error(at(text), format!("cosign_key: {why}"));
                        bad = true;
                    }
                    keys.push(reference);
                }
                None => bad = true,
            }
        }
        let attestation = match &r.attestation {
            Some(a) => match self.attestation_rule(a) {
                Some(rule) => Some(rule),
                None => {
                    bad = true;
                    None
                }
            },
            None => None,
        };
        (!bad).then_some(Verification {
            keys,
            keyless,
            attestation,
        })
    }

    /// The keyless signer: all three keys, or none.
    fn keyless(&mut self, raw: &Spanned<RawVerify>, bad: &mut bool) -> Option<Keyless> {
        let r = raw.get_ref();
        let (identity, issuer, root) = match (
            &r.certificate_identity,
            &r.certificate_oidc_issuer,
            &r.trusted_root,
        ) {
            (None, None, None) => return None,
            (Some(identity), Some(issuer), Some(root)) => (identity, issuer, root),
            _ => {
                self.error_hint(
                    Origin::File(raw.span()),
                    "keyless verification needs certificate_identity, certificate_oidc_issuer and trusted_root",
                    "trusted_root is Sigstore's trusted_root.json, as `cosign verify --trusted-root` takes",
                );
                *bad = true;
                return None;
            }
        };
        let plain = |what: &str| {
            let what = what.to_string();
            move |t: &str| {
                if t.is_empty() || t.len() > 1024 || t.chars().any(char::is_control) {
                    Err(format!("expected {what}"))
                } else {
                    Ok(t.to_string())
                }
            }
        };
        let identity = self.parse(
            identity,
            "certificate_identity",
            plain("an email address or a URI, exactly as the certificate names it"),
        );
        let issuer = self.parse(
            issuer,
            "certificate_oidc_issuer",
            plain("an issuer URL, such as https://token.actions.githubusercontent.com"),
        );
        let trusted_root = self.parse(root, "trusted_root", CredentialRef::parse);
        if let Some(CredentialRef::File(path)) = &trusted_root
            && let Err(why) = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|text| TrustedRoot::parse(&text).map(|_| ()))
        {
            self.error(at(root), format!("trusted_root: {why}"));
            *bad = true;
            return None;
        }
        match (identity, issuer, trusted_root) {
            (Some(identity), Some(issuer), Some(trusted_root)) => Some(Keyless {
                identity,
                issuer,
                trusted_root,
            }),
            _ => {
                *bad = true;
                None
            }
        }
    }

    fn attestation_rule(&mut self, raw: &Spanned<RawAttestation>) -> Option<AttestationRule> {
        let r = raw.get_ref();
        let Some(predicate_type) = &r.predicate_type else {
            self.error_hint(
                Origin::File(raw.span()),
                "attestation names no predicate_type",
                "e.g. predicate_type = \"https://slsa.dev/provenance/v1\"",
            );
            return None;
        };
        let predicate_type = self.parse(predicate_type, "predicate_type", |t| {
            if t.is_empty() || t.len() > 512 || t.chars().any(char::is_whitespace) {
                Err("expected a predicate type URI, such as https://slsa.dev/provenance/v1".into())
            } else {
                Ok(t.to_string())
            }
        })?;
        let field = match (&r.field, &r.equals) {
            (None, None) => None,
            (Some(f), Some(e)) => {
                let path = self.parse(f, "field", |t| {
                    let ok = !t.is_empty()
                        && t.split('.').all(|part| {
                            !part.is_empty()
                                && part
                                    .bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
                        });
                    if ok {
                        Ok(t.to_string())
                    } else {
                        Err("expected a dotted path into the statement, such as predicate.builder.id".into())
                    }
                })?;
                Some((path, e.get_ref().clone()))
            }
            (Some(f), None) => {
                self.error(at(f), "field without equals: say which value it must have");
                return None;
            }
            (None, Some(e)) => {
                self.error(at(e), "equals without field: say which field must have it");
                return None;
            }
        };
        Some(AttestationRule {
            predicate_type,
            field,
        })
    }
}
