//! Certificates made in the test (`rcgen`): a private CA and a server
//! certificate it signs for `localhost` and 127.0.0.1, written as PEM
//! files, for TLS between the agent and the analyzer.

use std::path::{Path, PathBuf};

/// The PEM files of one test's private CA and server certificate.
pub struct Certs {
    /// The CA's certificate: what clients trust.
    pub ca: PathBuf,
    /// The server's certificate and key, signed by the CA.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    /// Makes a CA and a server certificate in `dir`.
    pub fn make(dir: &Path) -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "heaptide test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        let certs = Certs {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        std::fs::write(&certs.ca, ca.pem()).expect("ca.pem");
        std::fs::write(&certs.cert, cert.pem()).expect("server.pem");
        std::fs::write(&certs.key, key.serialize_pem()).expect("server.key");
        certs
    }

    /// An HTTP client that trusts this CA alone, and shows redirects
    /// rather than following them.
    pub fn client(&self) -> ureq::Agent {
        let pem = std::fs::read(&self.ca).expect("ca.pem");
        let roots: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
                _ => None,
            })
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .build();
        ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(std::time::Duration::from_secs(10)))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into()
    }
}
