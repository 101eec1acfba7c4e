//! HTTPS from certificate files: `cert_file` (PEM, the chain after the certificate) and
//! `key_file` (its PEM private key).
//!
//! The files are read again when they change, and at once on SIGHUP, without a restart and
//! without touching open connections: renewals (cert-manager replacing a Kubernetes Secret,
//! certbot's deploy hook) reach new connections while open event streams carry on. A pair that
//! cannot be used (half-written, key and certificate not matching) is logged and the previous
//! one is kept, so a renewal caught between its two writes never takes the hub down.
//!
//! HTTP/2 is offered by ALPN before HTTP/1.1: browsers allow six HTTP/1.1 connections per
//! origin, so a page with more `EventSource`s than that stalls over HTTP/1.1, and over HTTP/2
//! they all share one connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How often the files are compared with the pair in use.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The certificate in use, and the file contents it was made from.
struct Loaded {
    key: Arc<CertifiedKey>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// The certificate and key of `cert_file` and `key_file`, as rustls asks for them at each
/// handshake.
pub struct CertificateFiles {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for CertificateFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateFiles")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl CertificateFiles {
    /// Reads both files; an error names the setting to fix.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Self>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = read_pair(cert_file, key_file, &provider)?;
        Ok(Arc::new(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: RwLock::new(Arc::new(loaded)),
        }))
    }

    /// Reads the files again and uses them if they changed: `Ok(true)` when the certificate
    /// was replaced, `Ok(false)` when the files are unchanged, an error (the previous pair still
    /// in use) when the new pair cannot be used.
    pub fn reload(&self) -> Result<bool, String> {
        let cert_pem = read(&self.cert_file, "cert_file")?;
        let key_pem = read(&self.key_file, "key_file")?;
        let current = self.current();
        if cert_pem == current.cert_pem && key_pem == current.key_pem {
            return Ok(false);
        }
        let key = certified_key(&cert_pem, &key_pem, &self.provider)?;
        let loaded = Loaded { key: Arc::new(key), cert_pem, key_pem };
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded);
        Ok(true)
    }

    fn current(&self) -> Arc<Loaded> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Reloads every [`CHECK_INTERVAL`], and at once on SIGHUP, until the process ends. The
    /// SIGHUP handler is in place when this returns (so a SIGHUP can no longer end the process);
    /// the returned future does the work.
    pub fn watch(self: Arc<Self>) -> impl std::future::Future<Output = ()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = signal(SignalKind::hangup())
            .map_err(|error| tracing::warn!(%error, "cannot listen for SIGHUP"))
            .ok();
        async move {
            let mut interval = tokio::time::interval(CHECK_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let asked = tokio::select! {
                    _ = interval.tick() => false,
                    Some(()) = async { hangup.as_mut()?.recv().await } => true,
                };
                self.reload_logged(asked);
            }
        }
    }

    fn reload_logged(&self, asked: bool) {
        match self.reload() {
            Ok(true) => tracing::info!(
                cert_file = %self.cert_file.display(),
                "certificate reloaded: new connections use it"
            ),
            Ok(false) if asked => tracing::info!("SIGHUP: the certificate files are unchanged"),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(%error, "cannot reload the certificate: still using the previous one");
            }
        }
    }

    /// The rustls configuration of the hub's listener: this certificate, HTTP/2 then HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, String> {
        server_config(self.provider.clone(), self.clone(), &[])
    }
}

/// The rustls configuration of an HTTPS listener whose certificates come from `resolver`:
/// HTTP/2 then HTTP/1.1 by ALPN, then the `extra_alpn` protocols.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<dyn ResolvesServerCert>,
    extra_alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.alpn_protocols.extend(extra_alpn.iter().map(|protocol| protocol.to_vec()));
    Ok(Arc::new(config))
}

impl ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().key.clone())
    }
}

fn read(path: &Path, setting: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {setting} {}: {e}", path.display()))
}

fn read_pair(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<Loaded, String> {
    let cert_pem = read(cert_file, "cert_file")?;
    let key_pem = read(key_file, "key_file")?;
    let key = certified_key(&cert_pem, &key_pem, provider)?;
    Ok(Loaded { key: Arc::new(key), cert_pem, key_pem })
}

/// The certificate chain and key of two PEM texts, checked to belong together.
fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cert_file is not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("cert_file holds no certificate (expected -----BEGIN CERTIFICATE-----)".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("key_file is not a PEM private key: {e}"))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "key_file is not the private key of cert_file's certificate".to_owned()
        }
        other => format!("key_file cannot be used: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two self-signed certificates made with openssl: `a.pem` + `a.key`, `b.pem` + `b.key`.
    fn two_certificates(dir: &Path) {
        for name in ["a", "b"] {
            let status = std::process::Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
                .args(["-nodes", "-days", "1", "-subj", &format!("/CN={name}")])
                .args(["-keyout", &format!("{name}.key"), "-out", &format!("{name}.pem")])
                .current_dir(dir)
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl runs");
            assert!(status.success());
        }
    }

    fn served(files: &CertificateFiles) -> Vec<u8> {
        files.current().key.cert[0].to_vec()
    }

    #[test]
    fn a_pair_that_does_not_match_is_refused_and_the_previous_one_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        two_certificates(dir.path());
        let path = |name: &str| dir.path().join(name);
        let error = CertificateFiles::load(&path("a.pem"), &path("b.key")).expect_err("refused");
        assert_eq!(error, "key_file is not the private key of cert_file's certificate");

        std::fs::copy(path("a.pem"), path("cert.pem")).expect("copy");
        std::fs::copy(path("a.key"), path("key.pem")).expect("copy");
        let files = CertificateFiles::load(&path("cert.pem"), &path("key.pem")).expect("loaded");
        let first = served(&files);
        assert_eq!(files.reload(), Ok(false), "unchanged");
        // Half-way through a renewal: the new certificate, the old key.
        std::fs::copy(path("b.pem"), path("cert.pem")).expect("copy");
        assert!(files.reload().is_err());
        assert_eq!(served(&files), first, "the previous pair is still served");
        std::fs::copy(path("b.key"), path("key.pem")).expect("copy");
        assert_eq!(files.reload(), Ok(true));
        assert_ne!(served(&files), first, "the new pair is served");
    }

    #[test]
    fn files_that_are_not_pem_are_refused_naming_the_setting() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "not a certificate").expect("write");
        std::fs::write(&key, "not a key").expect("write");
        let error = CertificateFiles::load(&cert, &key).expect_err("refused");
        assert!(error.contains("cert_file holds no certificate"), "{error}");
        let error = CertificateFiles::load(&dir.path().join("missing"), &key).expect_err("refused");
        assert!(error.starts_with("cannot read cert_file"), "{error}");
    }
}
