//! How the agent reaches the analyzer: TLS roots for an `https://`
//! endpoint, and the refusal to send a token in the clear beyond
//! loopback.

use std::net::IpAddr;

/// The certificates of a PEM file, as roots to trust.
///
/// # Errors
/// The file cannot be read, is over 1 MiB, or holds no certificate.
pub(crate) fn roots_from(path: &str) -> Result<ureq::tls::RootCerts, String> {
    use std::io::Read;
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut pem))
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

/// The host of an `http(s)://host[:port][/...]` URL, brackets removed.
fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

/// Whether a token would cross the network in the clear: a plain
/// `http://` endpoint whose host is not loopback. A name other than
/// `localhost` counts as not loopback: what it resolves to may change.
pub(crate) fn token_in_clear(endpoint: &str) -> bool {
    if !endpoint.starts_with("http://") {
        return false;
    }
    let h = host(endpoint);
    let loopback =
        h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    !loopback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_takes_a_token_over_plain_http() {
        for clear in [
            "http://10.0.0.1:4040",
            "http://heaptide.example.com",
            "http://[2001:db8::1]:80/x",
            "http://u@10.0.0.1",
        ] {
            assert!(token_in_clear(clear), "{clear}");
        }
        for safe in [
            "http://127.0.0.1:4040",
            "http://127.9.9.9",
            "http://localhost:4040",
            "http://[::1]:4040",
            "https://10.0.0.1:4040",
        ] {
            assert!(!token_in_clear(safe), "{safe}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("heaptide-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = roots_from(path.to_str().unwrap()).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        assert!(roots_from("/nonexistent/ca.pem")
            .unwrap_err()
            .contains("cannot read"));
    }
}
