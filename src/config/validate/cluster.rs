//! `[cluster]`: several replicas dividing the images among the live ones through etcd. The
//! endpoints are etcd's client URLs; the name keeps clusters that share an etcd apart; the
//! lease is how long a replica that stopped renewing keeps its images.

use std::time::Duration;

use toml::Spanned;

use super::{Validator, at, parse_duration};
use crate::config::credentials::CredentialRef;
use crate::config::diagnostic::Origin;
use crate::config::model::Cluster;
use crate::config::raw::RawCluster;

/// A lease shorter than this would expire between two renewals on a busy machine; longer
/// than this, a dead replica's images wait too long.
const MIN_LEASE: Duration = Duration::from_secs(2);
const MAX_LEASE: Duration = Duration::from_secs(300);
const DEFAULT_LEASE: Duration = Duration::from_secs(10);
const MAX_ENDPOINTS: usize = 16;

impl Validator<'_> {
    pub(super) fn cluster(&mut self, raw: &Spanned<RawCluster>) -> Option<Cluster> {
        let span = raw.span();
        let r = raw.get_ref();
        let mut bad = false;
        if let Some(b) = &r.backend
            && b.get_ref() != "etcd"
        {
            self.error(
                at(b),
                format!(
                    "`{}` is not a cluster backend: expected \"etcd\"",
                    b.get_ref()
                ),
            );
            bad = true;
        }
        let mut endpoints = Vec::new();
        match &r.endpoints {
            Some(list) if list.get_ref().is_empty() || list.get_ref().len() > MAX_ENDPOINTS => {
                self.error(
                    Origin::File(list.span()),
                    format!("endpoints lists 1 to {MAX_ENDPOINTS} etcd client URLs"),
                );
                bad = true;
            }
            Some(list) => {
                for e in list.get_ref() {
                    match self.parse(e, "endpoints", endpoint) {
                        Some(url) => endpoints.push(url),
                        None => bad = true,
                    }
                }
            }
            None => {
                self.error_hint(
                    Origin::Section(span),
                    "[cluster] has no endpoints",
                    "add endpoints = [\"http://127.0.0.1:2379\"] (etcd's client URLs)",
                );
                bad = true;
            }
        }
        let name = match &r.name {
            Some(n) => self.parse(n, "name", |t| {
                let ok = !t.is_empty()
                    && t.len() <= 64
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if ok {
                    Ok(t.to_string())
                } else {
                    Err("use 1 to 64 letters, digits, `-`, `_` or `.`".into())
                }
            }),
            None => Some("image-updater".to_string()),
        };
        let lease = match &r.lease {
            Some(l) => self.parse(l, "lease", |t| {
                let d = parse_duration(t)?;
                if (MIN_LEASE..=MAX_LEASE).contains(&d) {
                    Ok(d)
                } else {
                    Err(format!(
                        "a lease is {}s to {}s",
                        MIN_LEASE.as_secs(),
                        MAX_LEASE.as_secs()
                    ))
                }
            }),
            None => Some(DEFAULT_LEASE),
        };
        let credentials = match &r.credentials {
            Some(c) => self.parse(c, "credentials", CredentialRef::parse).map(Some),
            None => Some(None),
        };
        match (bad, name, lease, credentials) {
            (false, Some(name), Some(lease), Some(credentials)) => Some(Cluster {
                endpoints,
                name,
                lease,
                credentials,
            }),
            _ => None,
        }
    }
}

/// An etcd client URL: http, a host and a port, nothing else.
fn endpoint(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text)
        .map_err(|_| format!("`{text}` is not a URL such as http://127.0.0.1:2379"))?;
    if url.scheme() == "https" {
        return Err(format!(
            "`{text}`: TLS to etcd is not supported yet; reach it over a local or tunnelled http endpoint"
        ));
    }
    let plain = url.scheme() == "http"
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && matches!(url.path(), "" | "/")
        && url.query().is_none();
    if !plain {
        return Err(format!(
            "`{text}` is not an etcd client URL such as http://127.0.0.1:2379 (credentials go in `credentials`)"
        ));
    }
    Ok(text.trim_end_matches('/').to_string())
}
