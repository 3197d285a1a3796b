//! The certificate reloader: serves the certificate on disk, and the next one once it is
//! written.

use std::path::PathBuf;

use axum_server::tls_rustls::RustlsConfig;

use super::error::Error;
use super::file_watch::watch_directory_of;
use crate::metrics::CertificateMetrics;
use crate::tls;

/// The serving certificate, its key, and the CA that client certificates must chain to.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn load(&self) -> Result<tls::Loaded, tls::Error> {
        tls::load(&self.cert, &self.key, self.client_ca.as_deref())
    }
}

/// A running certificate reloader; it stops when dropped.
pub struct CertificateReloader {
    config: RustlsConfig,
    _watcher: notify::RecommendedWatcher,
}

impl CertificateReloader {
    /// Loads the certificate (an error if it is unusable) and watches for its replacement.
    pub fn start(
        files: TlsFiles,
        metrics: CertificateMetrics,
    ) -> Result<CertificateReloader, Error> {
        let loaded = files.load()?;
        metrics.expiry.set(loaded.not_after);
        let config = RustlsConfig::from_config(loaded.config);
        let reloaded = config.clone();
        let cert = files.cert.clone();
        let watcher = watch_directory_of(&cert, move || reload(&files, &reloaded, &metrics))?;
        Ok(CertificateReloader {
            config,
            _watcher: watcher,
        })
    }

    /// The TLS configuration to serve; it follows every reload.
    pub fn rustls_config(&self) -> RustlsConfig {
        self.config.clone()
    }
}

fn reload(files: &TlsFiles, config: &RustlsConfig, metrics: &CertificateMetrics) {
    match files.load() {
        Ok(loaded) => {
            config.reload_from_config(loaded.config);
            metrics.expiry.set(loaded.not_after);
            tracing::info!(cert = %files.cert.display(), "reloaded the serving certificate");
        }
        // Keep serving the old certificate; a half-written pair is retried on the next event.
        Err(error) => tracing::warn!(%error, "certificate change not loaded"),
    }
}
