//! `[cluster]`: several replicas dividing the images among the live ones through etcd. The
//! endpoints are etcd's client URLs; the name keeps clusters that share an etcd apart; the
//! lease is how long a replica that stopped renewing keeps its images; TLS files secure the way
//! to etcd.
//!
//! The section as written ([`RawCluster`]), as validated ([`Cluster`]: endpoints that are
//! URLs, a lease etcd accepts, a name), and the checks between them, together in this file.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sha2::Digest as _;
use toml::Spanned;

use super::credentials::CredentialRef;
use super::diagnostic::Origin;
use super::validator::{Str, Validator, at, parse_duration};

// ---- As written ----

/// `[cluster]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawCluster {
    /// `etcd`, the only backend.
    #[schemars(with = "Option<String>")]
    pub backend: Option<Str>,
    #[schemars(with = "Option<Vec<String>>")]
    pub endpoints: Option<Spanned<Vec<Str>>>,
    #[schemars(with = "Option<String>")]
    pub name: Option<Str>,
    /// A duration, `10s` by default.
    #[schemars(with = "Option<String>")]
    pub lease: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub credentials: Option<Str>,
    /// The CA of etcd's certificates, for `https://` endpoints.
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Str>,
    /// A client certificate and key, when etcd checks clients' certificates.
    #[schemars(with = "Option<String>")]
    pub tls_certificate: Option<Str>,
    #[schemars(with = "Option<String>")]
    pub tls_key: Option<Str>,
}

// ---- As validated ----

/// `[cluster]`: replicas that divide the images among the live ones, through etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `http://host:2379`, …: etcd's client URLs.
    pub endpoints: Vec<String>,
    /// Keeps clusters sharing one etcd apart: keys live under `/image-updater/NAME/`.
    pub name: String,
    /// Whether the config names the cluster; otherwise `name` is derived from the repositories.
    pub named: bool,
    /// How long a replica that stopped renewing its lease keeps its images: its work moves to
    /// the others after this (plus at most a second).
    pub lease: Duration,
    /// etcd's `user:password`, when it has authentication on.
    pub credentials: Option<CredentialRef>,
    /// For `https://` endpoints: the CA that signs etcd's certificates, and this replica's
    /// client certificate when etcd asks for one.
    pub tls: Option<ClusterTls>,
}

/// TLS to etcd: PEM files, read when a replica connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    pub ca_file: std::path::PathBuf,
    /// The client certificate and its key, for etcd's `--client-cert-auth`.
    pub client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

// ---- The checks ----

/// The cluster name when the config gives none: `repos-` and a digest of the git
/// repositories the config writes to (their urls without credentials), so that two
/// deployments that share an etcd without naming their clusters only meet when they write to
/// the same repositories. A constant default let any two deployments divide each other's
/// images.
fn default_name(repository_urls: &[&str]) -> String {
    let mut urls: Vec<String> = repository_urls
        .iter()
        .map(|url| match reqwest::Url::parse(url) {
            Ok(mut u) => {
                let _ = u.set_username("");
                let _ = u.set_password(None);
                u.to_string()
            }
            Err(_) => url.to_string(),
        })
        .collect();
    urls.sort();
    urls.dedup();
    let mut h = sha2::Sha256::new();
    for url in &urls {
        h.update(url.as_bytes());
        h.update([0]);
    }
    format!("repos-{}", crate::hex::encode(&h.finalize()[..6]))
}

/// A lease shorter than this would expire between two renewals on a busy machine; longer
/// than this, a dead replica's images wait too long.
const MIN_LEASE: Duration = Duration::from_secs(2);
const MAX_LEASE: Duration = Duration::from_secs(300);
const DEFAULT_LEASE: Duration = Duration::from_secs(10);
const MAX_ENDPOINTS: usize = 16;

impl Validator<'_> {
    pub(super) fn cluster(
        &mut self,
        raw: &Spanned<RawCluster>,
        repository_urls: &[&str],
    ) -> Option<Cluster> {
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
            None => Some(default_name(repository_urls)),
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
        let tls = self.cluster_tls(raw, &endpoints);
        match (bad, name, lease, credentials, tls) {
            (false, Some(name), Some(lease), Some(credentials), Some(tls)) => Some(Cluster {
                endpoints,
                name,
                named: r.name.is_some(),
                lease,
                credentials,
                tls,
            }),
            _ => None,
        }
    }

    /// `ca_file`, `tls_certificate` and `tls_key`: https endpoints need the CA (etcd's
    /// certificates are rarely signed by a public one), and plain http ones take none, so a
    /// half-secured setup is refused rather than run in the clear. `None` was reported.
    fn cluster_tls(
        &mut self,
        raw: &Spanned<RawCluster>,
        endpoints: &[String],
    ) -> Option<Option<ClusterTls>> {
        let r = raw.get_ref();
        let https = endpoints
            .iter()
            .filter(|e| e.starts_with("https://"))
            .count();
        if https != 0 && https != endpoints.len() {
            self.error(
                Origin::Section(raw.span()),
                "[cluster] endpoints mix https:// and http://: use one for all",
            );
            return None;
        }
        // Each file's mistake is reported, then the first ends the section.
        let ca_file = r
            .ca_file
            .as_ref()
            .map(|ca| self.absolute_path(ca, "ca_file"));
        let client = match (&r.tls_certificate, &r.tls_key) {
            (None, None) => None,
            (Some(certificate), Some(key)) => {
                let certificate = self.absolute_path(certificate, "tls_certificate");
                let key = self.absolute_path(key, "tls_key");
                Some((certificate?, key?))
            }
            (Some(given), None) | (None, Some(given)) => {
                self.error_hint(
                    at(given),
                    "[cluster] needs both tls_certificate and tls_key for a client certificate",
                    "add the other one, or remove this one if etcd does not check clients' certificates",
                );
                return None;
            }
        };
        let ca_file = match ca_file {
            Some(path) => Some(path?),
            None => None,
        };
        match (https > 0, ca_file) {
            (true, Some(ca_file)) => Some(Some(ClusterTls { ca_file, client })),
            (true, None) => {
                self.error_hint(
                    Origin::Section(raw.span()),
                    "[cluster] has https:// endpoints but no ca_file",
                    "add ca_file = \"/etc/image-updater/etcd-ca.pem\", the CA that signed etcd's certificates",
                );
                None
            }
            (false, None) if client.is_none() => Some(None),
            (false, _) => {
                let key = r
                    .ca_file
                    .as_ref()
                    .or(r.tls_certificate.as_ref())
                    .or(r.tls_key.as_ref());
                self.error_hint(
                    key.map_or(Origin::Section(raw.span()), at),
                    "TLS files are set but the endpoints are http://",
                    "use https:// endpoints, or remove ca_file, tls_certificate and tls_key",
                );
                None
            }
        }
    }
}

/// An etcd client URL: http or https, a host and a port, nothing else.
fn endpoint(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text)
        .map_err(|_| format!("`{text}` is not a URL such as http://127.0.0.1:2379"))?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && matches!(url.path(), "" | "/")
        && url.query().is_none();
    if !plain {
        return Err(format!(
            "`{text}` is not an etcd client URL such as https://etcd-1:2379 (credentials go in `credentials`)"
        ));
    }
    Ok(text.trim_end_matches('/').to_string())
}
