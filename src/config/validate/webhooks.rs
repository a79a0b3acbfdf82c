//! `[webhooks]`: where registries send push events, the secret they prove, and the
//! certificate the listener presents when it serves HTTPS.

use std::net::SocketAddr;

use toml::Spanned;

use super::{Validator, at};
use crate::config::credentials::CredentialRef;
use crate::config::diagnostic::Origin;
use crate::config::model::{WebhookTls, Webhooks};
use crate::config::raw::RawWebhooks;

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
