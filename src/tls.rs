//! Certificates: generation for `raygate certs` and development, loading, and hot reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no usable PEM {what}: {message}")]
    Pem {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// A CA and a serving certificate it signed, in PEM.
pub struct GeneratedCerts {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Generates a CA and a serving certificate for `hosts` (DNS names or IP addresses).
pub fn generate(hosts: &[String], days: u32) -> Result<GeneratedCerts> {
    let now = time::OffsetDateTime::now_utc();
    let not_after = now + time::Duration::days(i64::from(days));

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "raygate webhook CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - time::Duration::minutes(5);
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let mut params = CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        hosts.first().map_or("raygate", String::as_str),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = ca_params.not_before;
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &Issuer::new(ca_params, ca_key))?;
    Ok(GeneratedCerts {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`.
pub fn write(dir: &Path, certs: &GeneratedCerts) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (name, text) in [
        (CA_FILE, &certs.ca_pem),
        (CERT_FILE, &certs.cert_pem),
        (KEY_FILE, &certs.key_pem),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).map_err(io(&key))?;
    }
    Ok(())
}

/// A loaded serving configuration and the certificate's expiry (Unix seconds).
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    pub not_after: i64,
}

/// Loads a certificate chain and key into a TLS 1.2/1.3 server configuration with
/// HTTP/2 and HTTP/1.1 offered by ALPN.
pub fn load(cert_path: &Path, key_path: &Path, client_ca: Option<&Path>) -> Result<Loaded> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .and_then(|iter| iter.collect())
        .map_err(|e| Error::Pem {
            path: cert_path.to_path_buf(),
            what: "certificate",
            message: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(Error::Pem {
            path: cert_path.to_path_buf(),
            what: "certificate",
            message: "the file holds no certificate".into(),
        });
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .map_err(|e| Error::Pem {
            path: cert_path.to_path_buf(),
            what: "certificate",
            message: e.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| Error::Pem {
        path: key_path.to_path_buf(),
        what: "private key",
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let mut config = match client_ca {
        None => builder.with_no_client_auth().with_single_cert(chain, key)?,
        Some(ca_path) => builder
            .with_client_cert_verifier(client_verifier(ca_path, provider)?)
            .with_single_cert(chain, key)?,
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        not_after,
    })
}

/// Accepts client certificates that chain to a CA in `ca_path`, and requires one.
fn client_verifier(
    ca_path: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let pem_error = |e: &dyn std::fmt::Display| Error::Pem {
        path: ca_path.to_path_buf(),
        what: "client CA",
        message: e.to_string(),
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_path).map_err(|e| pem_error(&e))? {
        roots.add(cert.map_err(|e| pem_error(&e))?)?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
        .build()
        .map_err(|e| pem_error(&e))
}

/// Watches the certificate's directory (not the file: a Secret volume swaps its `..data`
/// symlink) and calls `reload` after changes settle.
pub fn watch(
    dir: PathBuf,
    reload: impl Fn() + Send + 'static,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only changes count: reading the files (as the reload itself does) raises access
        // events, which would otherwise reload again and again.
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    std::thread::Builder::new()
        .name("raygate-cert-watch".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                // A swap is several events; let them settle, then reload once.
                std::thread::sleep(Duration::from_millis(200));
                while rx.try_recv().is_ok() {}
                reload();
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn reads_do_not_reload_and_a_reload_does_not_trigger_itself() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join(CERT_FILE);
        std::fs::write(&cert, "first").unwrap();
        let reloads = Arc::new(AtomicUsize::new(0));
        let (counter, read_back) = (reloads.clone(), cert.clone());
        let _watcher = watch(dir.path().to_path_buf(), move || {
            // Like the real reload, read the files.
            let _ = std::fs::read(&read_back);
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        for _ in 0..5 {
            let _ = std::fs::read(&cert).unwrap();
        }
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(reloads.load(Ordering::SeqCst), 0, "reads reloaded");

        std::fs::write(&cert, "second").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while reloads.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "a change did not reload"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(
            reloads.load(Ordering::SeqCst),
            1,
            "the reload triggered itself"
        );
    }
}
