//! A batch the analyzer's side refuses keeps its metrics: here a proxy in
//! front of it refuses bodies over a size (as nginx's
//! `client_max_body_size` answers 413), so every batch with a heap profile
//! is refused, and its metrics are sent again without it, under the same
//! sequence number.

heaptide_agent::global_allocator!();

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use heaptide_wire::Batch;

/// The proxy's limit on a gzipped body: a batch of a few samples is far
/// under it, one with a heap profile of this process over it.
const LIMIT: usize = 6 << 10;

/// What the receiver saw of one batch: its sequence number, samples and
/// profiles, and whether it was accepted.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    seq: u64,
    samples: usize,
    profiles: usize,
    accepted: bool,
}

/// Serves one kept-alive connection: each request is answered, after a
/// pause, 413 when its body is over [`LIMIT`], 200 otherwise.
fn serve(conn: TcpStream, seen: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    for _ in 0..10_000 {
        let mut length = None;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let mut body = vec![0; length.unwrap_or(0)];
        reader.read_exact(&mut body)?;
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut json)?;
        let batch: Batch = serde_json::from_slice(&json).map_err(std::io::Error::other)?;
        let accepted = body.len() <= LIMIT;
        seen.lock().unwrap().push(Seen {
            seq: batch.seq,
            samples: batch.samples.len(),
            profiles: batch.profiles.len(),
            accepted,
        });
        // A slow answer, so that samples queue up behind a profile and
        // share its batch, as behind any slow or retried upload.
        std::thread::sleep(Duration::from_millis(250));
        let status = if accepted {
            "200 OK"
        } else {
            "413 Payload Too Large"
        };
        write!(conn, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n")?;
    }
    Ok(())
}

#[test]
fn a_refused_batch_is_sent_again_without_its_profiles() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(100).flatten() {
            let log = log.clone();
            std::thread::spawn(move || serve(conn, &log));
        }
    });
    let agent = heaptide_agent::builder()
        .endpoint(format!("http://{addr}"))
        .service("refused")
        .interval(Duration::from_millis(50))
        .profile_interval(Duration::from_millis(400))
        .heap_sample_period(4096u64)
        .shutdown_timeout(Duration::from_secs(2))
        .start()
        .unwrap();
    // Until a profile shares a refused batch with samples, or 20 s: on a
    // busy host a profile may come while the sender is idle and go out
    // alone, and the next one is a profile interval later.
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let shared = |seen: &[Seen]| {
        seen.iter()
            .any(|s| !s.accepted && s.profiles > 0 && s.samples > 0)
    };
    for i in 0..400 {
        kept.push(std::hint::black_box(vec![i as u8; 100_000]));
        std::thread::sleep(Duration::from_millis(50));
        if i >= 30 && shared(&seen.lock().unwrap()) {
            break;
        }
    }
    agent.shutdown();
    let seen = seen.lock().unwrap().clone();
    let refused: Vec<&Seen> = seen.iter().filter(|s| !s.accepted).collect();
    assert!(
        refused.iter().any(|s| s.profiles > 0 && s.samples > 0),
        "no batch with a profile and samples was refused: {seen:?}"
    );
    for r in &refused {
        assert!(
            r.profiles > 0,
            "only batches with profiles are too large: {r:?}"
        );
        if r.samples == 0 {
            continue;
        }
        let again = seen.iter().find(|s| s.seq == r.seq && s.accepted);
        assert_eq!(
            again.map(|s| (s.samples, s.profiles)),
            Some((r.samples, 0)),
            "batch {} was not sent again without its profiles: {seen:?}",
            r.seq
        );
    }
}
