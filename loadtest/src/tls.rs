//! TLS for `https://` hub URLs: the client configuration, built once from `--tls-ca` and shared by
//! every connection, and the names under which handshake failures are counted.
//!
//! The tool trusts only the certificates it is given: it carries no built-in roots (that would add
//! a dependency for a tool that measures hubs one runs oneself). It offers only `http/1.1` by ALPN,
//! because it speaks hand-written HTTP/1.1 inside the TLS stream, and it never resumes sessions, so
//! that every connection makes a full handshake, as many distinct browsers would.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rustls::client::Resumption;
use rustls::{CertificateError, ClientConfig, InvalidMessage, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The protocol spoken inside TLS, offered by ALPN.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The client configuration trusting the certificates of `ca_files` (PEM, each holding one or
/// more), or `None` when none is given. All connections share the one configuration returned.
pub fn client_config(ca_files: &[PathBuf]) -> anyhow::Result<Option<Arc<ClientConfig>>> {
    if ca_files.is_empty() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    for path in ca_files {
        add_certificates(&mut roots, path)
            .with_context(|| format!("--tls-ca {}", path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    // Full handshakes only: a shared ticket cache would let most of N connections resume, which
    // N real clients could not do, and would make the handshake cost depend on the cache size.
    config.resumption = Resumption::disabled();
    Ok(Some(Arc::new(config)))
}

/// Adds every certificate of the PEM file `path` to `roots`; a file with none is an error.
fn add_certificates(roots: &mut RootCertStore, path: &Path) -> anyhow::Result<()> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| anyhow::anyhow!("cannot read: {error}"))?;
    let mut added = 0;
    for certificate in certificates {
        let certificate =
            certificate.map_err(|error| anyhow::anyhow!("not a valid PEM file: {error}"))?;
        roots
            .add(certificate)
            .map_err(|error| anyhow::anyhow!("certificate {} is unusable: {error}", added + 1))?;
        added += 1;
    }
    anyhow::ensure!(added > 0, "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file");
    Ok(())
}

/// A short, stable category for a failed handshake, saying what to fix where it can.
pub fn failure_kind(error: &io::Error) -> String {
    let rustls_error = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let Some(rustls_error) = rustls_error else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof => {
                "TLS: the hub closed the connection in the handshake".into()
            }
            io::ErrorKind::ConnectionReset => "TLS: connection reset in the handshake".into(),
            kind => format!("TLS: {kind:?}"),
        };
    };
    match rustls_error {
        // BadSignature: a trusted certificate has the name of the issuer but not its key, as when
        // two self-signed certificates both say CN=localhost.
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => "TLS: the hub's certificate is not signed by a --tls-ca certificate".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "TLS: the hub's certificate is not valid for the host of the URL".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "TLS: the hub's certificate has expired".into(),
        // webpki's error, named by its Display (the type is not reachable through rustls).
        // `openssl req -x509` marks its certificates CA:TRUE unless told otherwise.
        rustls::Error::InvalidCertificate(CertificateError::Other(other))
            if other.0.to_string() == "CaUsedAsEndEntity" =>
        {
            "TLS: the hub's certificate is a CA certificate (CA:TRUE), refused as a server \
             certificate"
                .into()
        }
        // The first bytes back were not a TLS record: most likely an HTTP answer.
        rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType) => {
            "TLS: the hub did not answer in TLS (is it http://?)".into()
        }
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of a certificate, cut short: valid PEM around DER that does not parse.
    const TRUNCATED: &str = "-----BEGIN CERTIFICATE-----
MIIBmjCCAUCgAwIBAgIUXIqgtYcHRJEJYPdLCQ8dNiW9Al0wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MB4XDTI0MDEwMTAwMDAwMFoXDTM0MDEwMTAw
MDAwMFowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAE
-----END CERTIFICATE-----
";

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("loadtest-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("a writable temporary directory");
        path
    }

    #[test]
    fn no_ca_means_no_configuration() {
        assert!(client_config(&[]).expect("nothing to read").is_none());
    }

    #[test]
    fn unusable_ca_files_are_refused_with_their_name() {
        let missing = std::env::temp_dir().join("loadtest-tls-no-such-file.pem");
        let error = client_config(std::slice::from_ref(&missing)).expect_err("refused");
        assert!(format!("{error:#}").starts_with("--tls-ca "), "{error:#}");
        assert!(format!("{error:#}").contains("cannot read"), "{error:#}");

        let empty = temp_file("empty.pem", "no certificate here\n");
        let error = client_config(std::slice::from_ref(&empty)).expect_err("refused");
        let _ = std::fs::remove_file(&empty);
        assert!(format!("{error:#}").contains("no PEM certificate"), "{error:#}");

        let truncated = temp_file("truncated.pem", TRUNCATED);
        let error = client_config(std::slice::from_ref(&truncated)).expect_err("refused");
        let _ = std::fs::remove_file(&truncated);
        assert!(format!("{error:#}").contains("unusable"), "{error:#}");
    }

    #[test]
    fn handshake_failures_are_named() {
        let unknown = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(
            failure_kind(&unknown),
            "TLS: the hub's certificate is not signed by a --tls-ca certificate"
        );
        let ca = rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            Arc::new(io::Error::other("CaUsedAsEndEntity")),
        )));
        let ca = io::Error::new(io::ErrorKind::InvalidData, ca);
        assert!(failure_kind(&ca).contains("(CA:TRUE)"), "{}", failure_kind(&ca));
        let plain = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType),
        );
        assert_eq!(failure_kind(&plain), "TLS: the hub did not answer in TLS (is it http://?)");
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(failure_kind(&eof), "TLS: the hub closed the connection in the handshake");
    }
}
