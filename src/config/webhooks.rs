//! `[webhooks]`: where registries send push events, the secret they prove, and the
//! certificate the listener presents when it serves HTTPS.
//!
//! The section as written ([`RawWebhooks`]), as validated ([`Webhooks`]: an address to listen
//! on, a secret, TLS files that belong together), and the checks between them, together in
//! this file.

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::credentials::CredentialRef;
use super::diagnostic::Origin;
use super::validator::{Str, Validator, at};

// ---- As written ----

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawWebhooks {
    #[schemars(with = "Option<String>")]
    pub listen: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub secret: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub tls_certificate: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub tls_key: Option<Str>,
}

// ---- As validated ----

/// `[webhooks]`: registries POST push events here, and the images they name are checked at
/// once. Polling remains the safety net.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhooks {
    pub listen: SocketAddr,
    /// The shared secret: an HMAC-SHA256 key for signed payloads, or a bearer token.
    pub secret: CredentialRef,
    /// HTTPS instead of plain HTTP, when set.
    pub tls: Option<WebhookTls>,
}

/// The webhook listener's certificate chain and private key, PEM files reloaded when they
/// change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTls {
    pub certificate: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

// ---- The checks ----

impl Validator<'_> {
    pub(super) fn webhooks(&mut self, raw: &Spanned<RawWebhooks>) -> Option<Webhooks> {
        let span = raw.span();
        let raw = raw.get_ref();
        let listen = match &raw.listen {
            Some(l) => self.parse(l, "listen", |t| {
                t.parse::<SocketAddr>()
                    .map_err(|_| format!("`{t}` is not an address such as 0.0.0.0:8082"))
            }),
            None => {
                self.error_hint(
                    Origin::Section(span.clone()),
                    "[webhooks] has no listen address",
                    "add listen = \"0.0.0.0:8082\"",
                );
                None
            }
        };
        let secret = match &raw.secret {
            Some(s) => self.parse(s, "secret", CredentialRef::parse),
            None => {
                self.error_hint(
                    Origin::Section(span),
                    "[webhooks] has no secret: anyone could trigger checks",
                    "add secret = \"env:WEBHOOK_SECRET\" (an HMAC key or bearer token shared with the registry)",
                );
                None
            }
        };
        let tls = self.webhook_tls(raw);
        Some(Webhooks {
            listen: listen?,
            secret: secret?,
            tls: tls?,
        })
    }

    /// `tls_certificate` and `tls_key`: both or neither, absolute paths (the daemon's working
    /// directory is `/` under systemd). `Some(None)` is plain HTTP; `None` was reported.
    fn webhook_tls(&mut self, raw: &RawWebhooks) -> Option<Option<WebhookTls>> {
        match (&raw.tls_certificate, &raw.tls_key) {
            (None, None) => Some(None),
            (Some(certificate), Some(key)) => {
                let certificate = self.absolute_path(certificate, "tls_certificate");
                let key = self.absolute_path(key, "tls_key");
                Some(Some(WebhookTls {
                    certificate: certificate?,
                    key: key?,
                }))
            }
            (Some(given), None) | (None, Some(given)) => {
                self.error_hint(
                    at(given),
                    "[webhooks] needs both tls_certificate and tls_key for HTTPS",
                    "add the other one, or remove this one to serve plain HTTP",
                );
                None
            }
        }
    }
}
