//! TLS for the webhook listener: registries on other hosts send their push events over the
//! network, so the endpoint can serve HTTPS with a certificate and key from the config.
//!
//! Certificates are renewed on disk (cert-manager, certbot, an operator's cron): a task looks
//! at the files once a second and loads a changed pair without a restart. A pair that does not
//! load (half written, a key that is not the certificate's, not a regular file) is logged and
//! the previous one stays in use. The files are read on the blocking pool, one look at a time
//! and within [`READ_TIMEOUT`], never during a handshake: a file that hangs (a FIFO, a stuck
//! network filesystem) delays only the next renewal, not the listeners.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

/// A certificate chain and key file read larger than this is refused.
const MAX_FILE: u64 = 1024 * 1024;
/// How often the files' modification times are looked at.
const RECHECK: Duration = Duration::from_secs(1);
/// A look at the files that takes longer than this is given up (and not started again until
/// it has ended).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_FILE} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {detail}")]
    Pem { path: PathBuf, detail: String },
    #[error("the key in {key} cannot sign for the certificate in {certificate}: {detail}")]
    Mismatch {
        certificate: PathBuf,
        key: PathBuf,
        detail: String,
    },
}

/// The certificate and key files, and the pair loaded from them last.
#[derive(Debug)]
pub struct Certificates {
    certificate: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    pair: Arc<CertifiedKey>,
    /// The files' modification times when `pair` was read.
    stamps: [Option<SystemTime>; 2],
}

impl Certificates {
    /// Loads the pair now, so that a wrong file is a startup error.
    pub fn load(certificate: &Path, key: &Path) -> Result<Certificates, TlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let stamps = [modified(certificate), modified(key)];
        let pair = read_pair(certificate, key, &provider)?;
        Ok(Certificates {
            certificate: certificate.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            loaded: Mutex::new(Loaded {
                pair: Arc::new(pair),
                stamps,
            }),
        })
    }

    /// A server config that asks this resolver for the pair at each handshake.
    pub fn server_config(self: Arc<Self>) -> ServerConfig {
        let provider = self.provider.clone();
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the default provider supports its default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    /// The pair to present: the last one loaded.
    fn current(&self) -> Arc<CertifiedKey> {
        self.loaded.lock().expect("certificate lock").pair.clone()
    }

    /// Looks at the files every [`RECHECK`] until `shutdown`, and loads a changed pair.
    pub async fn keep_fresh(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(RECHECK);
        let mut looking: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            // One look at a time: a look that hangs is not joined by another every second.
            if looking.as_ref().is_some_and(|l| !l.is_finished()) {
                continue;
            }
            let this = self.clone();
            let look = tokio::task::spawn_blocking(move || this.look());
            looking = Some(look);
            let started = Instant::now();
            while looking.as_ref().is_some_and(|l| !l.is_finished()) {
                if started.elapsed() >= READ_TIMEOUT {
                    tracing::warn!(certificate = %self.certificate.display(), "webhooks: reading the TLS files took over {}s; still serving the previous pair", READ_TIMEOUT.as_secs());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Loads the pair again when the files changed since it was read (on the blocking pool).
    fn look(&self) {
        let stamps = [modified(&self.certificate), modified(&self.key)];
        if stamps == self.loaded.lock().expect("certificate lock").stamps {
            return;
        }
        match read_pair(&self.certificate, &self.key, &self.provider) {
            Ok(pair) => {
                tracing::info!(certificate = %self.certificate.display(), "webhooks: loaded the renewed TLS certificate");
                let mut loaded = self.loaded.lock().expect("certificate lock");
                loaded.pair = Arc::new(pair);
                loaded.stamps = stamps;
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: the changed TLS certificate or key does not load; still serving the previous one");
                // Not again until the files change once more.
                self.loaded.lock().expect("certificate lock").stamps = stamps;
            }
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let read = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Opened without blocking and read only when it is a regular file: a FIFO (or a device)
    // at the path would otherwise hold this read, and with it every handshake, until a
    // writer came.
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read)?;
    if !file.metadata().map_err(read)?.is_file() {
        return Err(TlsError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

fn read_pair(
    certificate: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let pem = |path: &Path, e: rustls_pki_types::pem::Error| TlsError::Pem {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(&read_bounded(certificate)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(certificate, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: certificate.to_path_buf(),
        });
    }
    let secret = PrivateKeyDer::from_pem_slice(&read_bounded(key)?).map_err(|e| pem(key, e))?;
    CertifiedKey::from_der(chain, secret, provider).map_err(|e: rustls::Error| TlsError::Mismatch {
        certificate: certificate.to_path_buf(),
        key: key.to_path_buf(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO at the certificate's path is refused at once, not read until a writer comes
    /// (which held every handshake, and the operator's port with them).
    #[test]
    fn a_fifo_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("cert.pem");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let started = Instant::now();
        let got = read_bounded(&fifo);
        assert!(matches!(got, Err(TlsError::NotAFile { .. })), "{got:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(matches!(
            read_bounded(dir.path()),
            Err(TlsError::NotAFile { .. } | TlsError::Read { .. })
        ));
    }
}
