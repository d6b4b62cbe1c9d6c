//! Load shedding against a real `analyzer serve`: slow clients hold
//! neither memory nor the server.

use std::time::Duration;

use heaptide_testkit::*;
use heaptide_wire::INGEST_PATH;

/// Opens a connection that sends a request head declaring `length` bytes
/// of body, and some of them, then holds it open.
fn stalled_upload(addr: std::net::SocketAddr, length: usize) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST {INGEST_PATH} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{\"version\":"
    );
    s.write_all(head.as_bytes()).unwrap();
    s
}

fn shedding_analyzer(dir: &std::path::Path) -> Proc {
    analyzer(
        dir,
        &dir.join("h.db"),
        "127.0.0.1:0",
        &["--max-concurrent-requests", "5", "--request-timeout", "2s"],
    )
}

fn healthz(an: &Proc) -> heaptide_testkit::raw::RawResponse {
    heaptide_testkit::raw::exchange(
        std::net::IpAddr::from([127, 0, 0, 1]),
        an.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap()
}

/// Reads a response until the server closes, within `limit`.
fn answer(mut s: std::net::TcpStream, limit: Duration) -> String {
    use std::io::Read;
    s.set_read_timeout(Some(limit)).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// Uploads past the body budget are refused at once, before a byte of
/// their body is read: four stalled 8 MiB uploads hold the 32 MiB budget.
#[test]
fn uploads_past_the_body_budget_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let an = shedding_analyzer(dir.path());
    let _held: Vec<_> = (0..4).map(|_| stalled_upload(an.addr, 8 << 20)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let text = answer(stalled_upload(an.addr, 8 << 20), Duration::from_secs(5));
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("bodies in flight"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
}

/// Five stalled uploads are five requests in flight: a sixth request, to
/// any route, is refused at once.
#[test]
fn requests_past_the_bound_in_flight_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let an = shedding_analyzer(dir.path());
    let _small: Vec<_> = (0..5).map(|_| stalled_upload(an.addr, 100)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = healthz(&an);
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.header("retry-after").is_some());
    assert!(r.body.contains("as many requests"), "{}", r.body);
}

/// A request that never finishes ends at its deadline, and frees its slot.
#[test]
fn a_stalled_request_ends_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let an = shedding_analyzer(dir.path());
    let started = std::time::Instant::now();
    let text = answer(stalled_upload(an.addr, 100), Duration::from_secs(10));
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("longer than 2s"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(healthz(&an).status, 200);
}
