//! The connection to etcd: one member at a time, with the cluster's credentials and TLS
//! files, every request bounded by [`REQUEST_TIMEOUT`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::config::{Cluster, ClusterTls};
use crate::secrets::{self, Credential};

/// How long one etcd request may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A client of the first member (in turn) that answers and knows a leader.
pub(super) async fn connect(config: &Cluster) -> Result<Client, String> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    if let Some(reference) = &config.credentials {
        match secrets::resolve(reference, "etcd")
            .await
            .map_err(|e| e.to_string())?
        {
            Some(Credential::Basic { username, password }) => {
                options = options.with_user(username, password.expose());
            }
            Some(Credential::Bearer(_)) | None => {
                return Err(format!("{reference} holds no user:password for etcd"));
            }
        }
    }
    if let Some(tls) = &config.tls {
        options = options.with_tls(tls_options(tls)?);
    }
    // One member at a time, not a balanced channel over all of them: a balanced channel
    // sends some requests to a member that is down and fails them, and a replica would count
    // itself out over and over while the quorum is fine. The first member that answers and
    // knows a leader is used until a request through it fails.
    let count = config.endpoints.len().max(1);
    let start = NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed) % count;
    let mut failures = Vec::new();
    for k in 0..config.endpoints.len() {
        let endpoint = &config.endpoints[(start + k) % count];
        let reached = async {
            let mut client = Client::connect([endpoint.as_str()], Some(options.clone()))
                .await
                .map_err(|e| e.to_string())?;
            let status = timed(client.status()).await?.map_err(|e| e.to_string())?;
            if status.leader() == 0 {
                return Err("it has no leader (no quorum)".to_string());
            }
            Ok(client)
        };
        match reached.await {
            Ok(client) => return Ok(client),
            Err(e) => failures.push(format!("{endpoint}: {e}")),
        }
    }
    Err(format!("cannot reach etcd: {}", failures.join("; ")))
}

/// Which member the next connection tries first: each connection starts one further, so a
/// member that answers but cannot serve is not picked every time.
static NEXT_ENDPOINT: AtomicUsize = AtomicUsize::new(0);

/// The largest PEM file read for TLS to etcd.
const MAX_PEM: u64 = 1 << 20;

/// The CA and client certificate, read at each connection so renewed files are used.
fn tls_options(tls: &ClusterTls) -> Result<TlsOptions, String> {
    let read = |path: &std::path::Path| -> Result<Vec<u8>, String> {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_PEM + 1), &mut bytes)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if bytes.len() as u64 > MAX_PEM {
            return Err(format!("{} is over {MAX_PEM} bytes", path.display()));
        }
        Ok(bytes)
    };
    let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca_file)?));
    if let Some((certificate, key)) = &tls.client {
        options = options.identity(Identity::from_pem(read(certificate)?, read(key)?));
    }
    Ok(options)
}

/// `future`, or an error once [`REQUEST_TIMEOUT`] has passed.
pub(super) async fn timed<T>(future: impl std::future::Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(REQUEST_TIMEOUT, future)
        .await
        .map_err(|_| format!("etcd did not answer within {}s", REQUEST_TIMEOUT.as_secs()))
}
