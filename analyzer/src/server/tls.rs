//! TLS terminated by `serve` itself (`--tls-cert`, `--tls-key`), for a
//! deployment with no proxy in front: rustls, its certificate chain and
//! key read from PEM files at start.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use crate::error::{Error, Result};

/// The server's TLS settings, ready to accept with.
#[derive(Clone)]
pub struct Tls {
    pub(super) acceptor: tokio_rustls::TlsAcceptor,
    /// The certificate file, for `Debug` and the log.
    cert: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls({}, <key redacted>)", self.cert)
    }
}

impl Tls {
    /// Reads a PEM certificate chain and its private key.
    ///
    /// # Errors
    /// A file that cannot be read, holds no certificate or no key, or a
    /// key that does not fit the certificate: named, with the flag.
    pub fn load(cert: &Path, key: &Path) -> Result<Self> {
        let bad = |flag: &str, path: &Path, why: String| {
            Error::invalid(flag, format!("{}: {why}", path.display()))
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| bad("tls-cert", cert, e.to_string()))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad("tls-cert", cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(bad("tls-cert", cert, "holds no PEM certificate".into()));
        }
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| bad("tls-key", key, format!("no PEM private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("tls-cert", cert, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| bad("tls-key", key, format!("does not fit the certificate: {e}")))?;
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            cert: cert.display().to_string(),
        })
    }
}
