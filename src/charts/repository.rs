//! One chart repository's index, fetched when asked and kept with its validators.
//!
//! Every fetch after the first is conditional (`If-None-Match` with the index's `ETag`,
//! `If-Modified-Since` with its `Last-Modified`), so an unchanged index costs the repository
//! a 304 and no bytes. The index is read up to a size limit (32 MiB unless configured: the
//! largest public indexes are tens of megabytes, which is a reason to split a repository,
//! not to read without bound), within a timeout, and parsed as a stream. Credentials go
//! only to the repository's own origin: reqwest drops them on a redirect to another host.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};

use super::index::{self, ChartEntry, IndexError};
use crate::bounded::{self, BodyError};
use crate::config::CredentialRef;
use crate::secrets::{self, Credential, CredentialError};

/// How a repository is reached.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The repository's url (`https://kubernetes.github.io/ingress-nginx`); the index is
    /// `index.yaml` under it.
    pub url: String,
    pub credentials: Option<CredentialRef>,
    /// The largest index read, in bytes.
    pub max_index: u64,
    pub timeout: Duration,
    /// A CA bundle (PEM) to trust besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Settings {
    pub const DEFAULT_MAX_INDEX: u64 = 32 << 20;

    pub fn new(url: &str) -> Settings {
        Settings {
            url: url.trim_end_matches('/').to_string(),
            credentials: None,
            max_index: Settings::DEFAULT_MAX_INDEX,
            timeout: Duration::from_secs(60),
            ca_file: None,
        }
    }
}

/// Why an index could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RepositoryError {
    #[error("chart repository {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error(
        "chart repository {url}: index.yaml is larger than {limit} bytes; raise the \
         repository's max_index_size if it really is that large"
    )]
    TooLarge { url: String, limit: u64 },
    #[error("chart repository {url}: index.yaml answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("chart repository {url}: index.yaml is {source}")]
    Index { url: String, source: IndexError },
    #[error("chart repository {url}: {source}")]
    Credentials {
        url: String,
        source: CredentialError,
    },
}

/// What the last good fetch gave, and how to ask whether it changed.
struct Kept {
    etag: Option<String>,
    last_modified: Option<String>,
    /// The charts read from it, for `wanted` at the time.
    charts: Arc<HashMap<String, Vec<ChartEntry>>>,
    wanted: BTreeSet<String>,
}

/// A chart repository: its settings, a client, and the index last read.
pub struct ChartRepository {
    settings: Settings,
    http: reqwest::Client,
    kept: Mutex<Option<Kept>>,
    /// Requests made since last taken, by the status answered (0: no answer).
    requests: Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl ChartRepository {
    pub fn new(settings: Settings) -> Result<ChartRepository, RepositoryError> {
        let unreachable = |detail: String| RepositoryError::Unreachable {
            url: settings.url.clone(),
            detail,
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("image-updater/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .timeout(settings.timeout);
        if let Some(ca) = &settings.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| unreachable(format!("ca_file {}: {e}", ca.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| unreachable(format!("ca_file {}: {e}", ca.display())))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| unreachable(e.to_string()))?;
        Ok(ChartRepository {
            settings,
            http,
            kept: Mutex::new(None),
            requests: Mutex::default(),
        })
    }

    pub fn url(&self) -> &str {
        &self.settings.url
    }

    /// The requests made since the last call, by the status answered (0: no answer), for
    /// the daemon's metrics, which outlive this client.
    pub fn take_requests(&self) -> std::collections::BTreeMap<u16, u64> {
        std::mem::take(&mut *self.requests.lock().expect("requests lock"))
    }

    fn count(&self, status: u16) {
        let mut requests = self.requests.lock().expect("requests lock");
        let n = requests.entry(status).or_default();
        *n = n.saturating_add(1);
    }

    /// The versions of each chart of `wanted` the index lists. Asks the repository whether
    /// the index changed since it was last read; when it did not (a 304), the index read
    /// then answers, unless it was read for other charts.
    pub async fn charts(
        &self,
        wanted: &BTreeSet<String>,
    ) -> Result<Arc<HashMap<String, Vec<ChartEntry>>>, RepositoryError> {
        let url = format!("{}/index.yaml", self.settings.url);
        let mut request = self.http.get(&url);
        let validators = self.kept.lock().expect("kept lock").as_ref().and_then(|k| {
            (k.wanted.is_superset(wanted)).then(|| (k.etag.clone(), k.last_modified.clone()))
        });
        if let Some((etag, modified)) = validators {
            if let Some(etag) = etag {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(modified) = modified {
                request = request.header(IF_MODIFIED_SINCE, modified);
            }
        }
        if let Some(credential) = self.credential().await? {
            request = match credential {
                Credential::Basic { username, password } => {
                    request.basic_auth(username, Some(password.expose()))
                }
                Credential::Bearer(token) => request.bearer_auth(token.expose()),
            };
        }
        let unreachable = |e: reqwest::Error| RepositoryError::Unreachable {
            url: self.settings.url.clone(),
            detail: if e.is_timeout() {
                format!("no answer within {} s", self.settings.timeout.as_secs())
            } else {
                e.without_url().to_string()
            },
        };
        let response = request.send().await.map_err(|e| {
            self.count(0);
            unreachable(e)
        })?;
        self.count(response.status().as_u16());
        if response.status() == StatusCode::NOT_MODIFIED
            && let Some(kept) = self.kept.lock().expect("kept lock").as_ref()
        {
            return Ok(kept.charts.clone());
        }
        if !response.status().is_success() {
            return Err(RepositoryError::Status {
                url: self.settings.url.clone(),
                status: response.status().as_u16(),
            });
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let limit = usize::try_from(self.settings.max_index).unwrap_or(usize::MAX);
        let body = match bounded::read(response, limit).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return Err(RepositoryError::TooLarge {
                    url: self.settings.url.clone(),
                    limit: self.settings.max_index,
                });
            }
            Err(BodyError::Transport(e)) => return Err(unreachable(e)),
        };
        let text = String::from_utf8(body).map_err(|_| RepositoryError::Index {
            url: self.settings.url.clone(),
            source: IndexError::Yaml("not UTF-8".into()),
        })?;
        // A large index takes a while to read (about 0.4 s for 30 MB): off the async threads,
        // so the other sources' polls go on meanwhile.
        let names = wanted.clone();
        let read = tokio::task::spawn_blocking(move || index::read(&text, &names))
            .await
            .unwrap_or_else(|e| Err(IndexError::Shape(format!("the reader failed: {e}"))));
        let charts = Arc::new(read.map_err(|source| RepositoryError::Index {
            url: self.settings.url.clone(),
            source,
        })?);
        *self.kept.lock().expect("kept lock") = Some(Kept {
            etag,
            last_modified,
            charts: charts.clone(),
            wanted: wanted.clone(),
        });
        Ok(charts)
    }

    async fn credential(&self) -> Result<Option<Credential>, RepositoryError> {
        let Some(reference) = &self.settings.credentials else {
            return Ok(None);
        };
        let host = reqwest::Url::parse(&self.settings.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        secrets::resolve(reference, &host)
            .await
            .map_err(|source| RepositoryError::Credentials {
                url: self.settings.url.clone(),
                source,
            })
    }
}
