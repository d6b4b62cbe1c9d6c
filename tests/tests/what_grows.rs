//! What RSS growth is made of, on the real leaky example: memory mapped
//! outside the allocator, fragmentation, thread stacks and the heap, each
//! named as the part of RSS that grows; and a process that fragments once
//! and stays flat, not flagged; and a connection leak named by its peer.

use std::time::{Duration, Instant};

use heaptide_tests::*;

/// Runs the example, calling `route(n)` for the n-th request every
/// `every`, amid `/work`, for `secs`; returns `analyzer leaks` over it,
/// and the instance page.
fn leaks_while(
    instance: &str,
    secs: u64,
    every: Duration,
    route: impl Fn(u32) -> Option<String>,
) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let leaky = leaky(dir.path(), &format!("http://{}", an.addr), instance, &[]);
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        if start.elapsed() >= every * n {
            if let Some(r) = route(n) {
                let (status, body) = get(&leaky.url(&r));
                assert!(status == 200 && !body.starts_with("error"), "{r}: {body}");
            }
            n += 1;
        }
        assert_eq!(get(&leaky.url("/work")).0, 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(600));
    let v = leaks_json(&store);
    if finding(&v, "rss").is_none() {
        eprintln!("no rss finding after {n} calls:\n{}", verdicts(&store));
    }
    let page = an
        .get(&format!(
            "/ui/instance?service=leaky-service&instance={instance}&since=10m"
        ))
        .1;
    drop(leaky);
    (v, page)
}

/// The RSS finding's growing part, with its reason.
fn rss_part(v: &serde_json::Value) -> (String, String) {
    let rss = finding(v, "rss").unwrap_or_else(|| panic!("no rss finding: {v:#}"));
    (
        rss["detail"]["rss_part"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        rss["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn memory_mapped_outside_the_allocator_is_named() {
    let (v, page) = leaks_while("mmap", 50, Duration::from_millis(250), |_| {
        Some("/leak-mmap?kb=512".into())
    });
    // The page stacks the parts: heap, then each part on top.
    for series in [
        "heap",
        "+ fragmentation",
        "+ stacks",
        "+ outside allocator",
        "+ file",
    ] {
        assert!(
            page.contains(&format!("data-series=\"{series}\"")),
            "{series} in the RSS chart"
        );
    }
    let (part, reason) = rss_part(&v);
    assert_eq!(part, "outside_allocator", "{v:#}");
    assert!(
        reason.contains("outside the allocator: anonymous mappings"),
        "{reason}"
    );
    assert!(finding(&v, "heap").is_none(), "the heap is flat: {v:#}");
}

#[test]
fn fragmentation_is_named_as_allocator_overhead() {
    // One size class every 2.5 s: 20 calls, each a new class.
    let (v, _) = leaks_while("fragment", 50, Duration::from_millis(2500), |_| {
        Some("/fragment?kb=4096".into())
    });
    let (part, reason) = rss_part(&v);
    assert_eq!(part, "fragmentation", "{v:#}");
    assert!(
        reason.contains("allocator overhead: fragmentation"),
        "{reason}"
    );
}

#[test]
fn thread_stacks_are_named() {
    let (v, _) = leaks_while("stacks", 50, Duration::from_millis(400), |_| {
        Some("/spawn-stack-thread?kb=1024".into())
    });
    let (part, reason) = rss_part(&v);
    assert_eq!(part, "stacks", "{v:#}");
    assert!(reason.contains("thread stacks grow"), "{reason}");
}

#[test]
fn a_heap_leak_is_named_as_the_heap() {
    let (v, _) = leaks_while("heap", 50, Duration::from_millis(50), |_| {
        Some("/leak?kb=64".into())
    });
    let (part, reason) = rss_part(&v);
    assert_eq!(part, "heap", "{v:#}");
    assert!(reason.contains("see the sites"), "{reason}");
}

#[test]
fn fragmenting_once_and_staying_flat_is_not_a_finding() {
    let (v, _) = leaks_while("fragment-once", 50, Duration::from_millis(200), |n| {
        (n < 8).then(|| "/fragment?kb=2048".into())
    });
    assert!(
        v["findings"].as_array().unwrap().is_empty(),
        "false positive: {v:#}"
    );
}

/// Connections to a server on loopback (this test's own listener, which
/// accepts and holds them), opened and never closed: one finding, fds of
/// sockets, naming the peer, with the same growth as sockets merged in.
#[test]
fn a_connection_leak_is_one_finding_naming_its_peer() {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in server.incoming().take(2_000).flatten() {
            held.push(c);
        }
    });
    let route = format!("/leak-conn?addr={addr}");
    let (v, _) = leaks_while("conn", 50, Duration::from_millis(100), move |_| {
        Some(route.clone())
    });
    let fds = finding(&v, "fds").unwrap_or_else(|| panic!("no fds finding: {v:#}"));
    assert_eq!(fds["detail"]["fd_kind"], "socket", "{fds:#}");
    assert_eq!(fds["detail"]["peer"], addr.to_string(), "{fds:#}");
    assert_eq!(
        fds["also_seen_as"], "sockets (tcp state established)",
        "{fds:#}"
    );
    assert!(
        finding(&v, "sockets").is_none(),
        "one cause, one finding: {v:#}"
    );
}
