//! Raw HTTP/1.1 over a socket bound to a chosen loopback address, so that
//! one test can play agents on different hosts (127.0.0.2, 127.0.0.3, ...)
//! and send requests no HTTP client would.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response as read off the socket: status, headers (names in lower
/// case) and body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` (the whole request, head and body) from `source` to
/// `addr` and reads the response until the server closes, within 30 s.
pub fn exchange(source: IpAddr, addr: SocketAddr, request: &[u8]) -> std::io::Result<RawResponse> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let text = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let mut conn = socket.connect(addr).await?;
        conn.write_all(request).await?;
        let mut out = Vec::new();
        let read = conn.read_to_end(&mut out);
        match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(r) => r.map(|_| out),
            Err(_) => Err(std::io::Error::other("no response within 30 s")),
        }
    })?;
    parse(&String::from_utf8_lossy(&text))
}

/// A POST with `Connection: close`, from `source`.
pub fn post_from(
    source: IpAddr,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<RawResponse> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    exchange(source, addr, &bytes)
}

fn parse(text: &str) -> std::io::Result<RawResponse> {
    let bad = || std::io::Error::other(format!("not an HTTP response: {text:.200}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(RawResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}
