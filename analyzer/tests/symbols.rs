//! The analyzer's symbolizer, on both stores: a profile whose frames are
//! addresses of this test binary, in a mapping with its build-id, is named
//! from the binary found in a debug directory, once; a second analyzer
//! sharing the store (with no debug files at all) names the same
//! addresses from what the first kept, with no pass of its own. And the
//! upload route against a real `analyzer serve`: only the agent asked may
//! upload, only a file with the build-id asked for is kept, a file over
//! the bound is refused before it is read, and an upload's deadline grows
//! with its length.

use heaptide_analyzer::ingest::{accept, Limits, ValidBatch};
use heaptide_analyzer::store::{ClickHouseStore, ClickHouseUrl, SqliteStore, Store};
use heaptide_analyzer::symbols::Symbols;
use heaptide_testkit::clickhouse::{database, ClickHouse};
use heaptide_testkit::unnamed::{own_text_mapping, posted, unnamed_profile};
use heaptide_testkit::{analyzer, fixtures, http, Proc};
use heaptide_wire::pprof;
use std::sync::atomic::Ordering::Relaxed;

#[inline(never)]
fn a_function_the_analyzer_names() -> u64 {
    std::hint::black_box(a_function_the_analyzer_names as *const () as u64)
}

/// A batch with one profile of one stack: a return address inside
/// `a_function_the_analyzer_names`, unnamed.
fn unnamed_batch(now: i64) -> ValidBatch {
    accept(unnamed_wire_batch(now, "a"), &Limits::default(), now).unwrap()
}

/// [`unnamed_batch`] as an agent `instance` of `svc` sends it.
fn unnamed_wire_batch(now: i64, instance: &str) -> heaptide_wire::Batch {
    let addr = a_function_the_analyzer_names() + 4;
    let mut b = fixtures::batch(fixtures::agent("svc", instance, 1, now - 60_000), 1, now);
    b.profiles.push(unnamed_profile(
        &[vec![addr]],
        &own_text_mapping(),
        now - 1_000,
    ));
    b
}

fn first_frame(vb: &ValidBatch) -> String {
    vb.profiles[0].stacks[0].frames[0].function.to_string()
}

#[test]
fn addresses_are_named_once_for_every_analyzer_sharing_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let debug = dir.path().join("debug");
    std::fs::create_dir(&debug).unwrap();
    std::fs::copy(std::env::current_exe().unwrap(), debug.join("the-binary")).unwrap();
    let ch = ClickHouse::shared();
    let url = ClickHouseUrl::parse(&ch.url(&database("symbols"))).unwrap();
    let stores: Vec<(&str, Box<dyn Store>)> = vec![
        (
            "sqlite",
            Box::new(SqliteStore::open(dir.path().join("s.db")).unwrap()),
        ),
        ("clickhouse", Box::new(ClickHouseStore::open(url).unwrap())),
    ];
    let limits = Limits::default().profile;
    let now = heaptide_analyzer::select::now_ms();
    for (name, store) in &stores {
        let mut vb = unnamed_batch(now);
        assert!(first_frame(&vb).starts_with("0x"), "{name}: sent unnamed");
        let first = Symbols::new(
            vec![debug.clone()],
            None,
            dir.path().join(format!("cache-{name}")),
        );
        first.name_batch(&mut vb, &**store, &limits).unwrap();
        assert!(
            first_frame(&vb).ends_with("a_function_the_analyzer_names"),
            "{name}: {}",
            first_frame(&vb)
        );
        assert!(vb.profiles[0].stacks[0].frames[0]
            .file
            .ends_with("symbols.rs"));
        // The profile kept as received is named too, for pprof downloads.
        let kept = pprof::decode(&vb.profiles[0].raw, &limits).unwrap();
        let named = pprof::heap_stacks(&kept, &limits).unwrap();
        assert_eq!(named, vb.profiles[0].stacks, "{name}");
        // Again, from memory: no second pass.
        let mut again = unnamed_batch(now);
        first.name_batch(&mut again, &**store, &limits).unwrap();
        assert_eq!(first_frame(&again), first_frame(&vb), "{name}");
        assert_eq!(first.counts.passes.load(Relaxed), 1, "{name}");
        // Another analyzer, with no debug files: the store names it.
        let second = Symbols::new(Vec::new(), None, dir.path().join(format!("other-{name}")));
        let mut third = unnamed_batch(now);
        second.name_batch(&mut third, &**store, &limits).unwrap();
        assert_eq!(first_frame(&third), first_frame(&vb), "{name}");
        assert_eq!(second.counts.passes.load(Relaxed), 0, "{name}");
        assert_eq!(second.counts.missing.load(Relaxed), 0, "{name}");
    }
}

#[test]
fn without_a_debug_file_addresses_stay_as_they_came() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
    let symbols = Symbols::new(
        vec![dir.path().join("none")],
        None,
        dir.path().join("cache"),
    );
    let now = heaptide_analyzer::select::now_ms();
    let mut vb = unnamed_batch(now);
    let before = vb.profiles[0].stacks.clone();
    symbols
        .name_batch(&mut vb, &store, &Limits::default().profile)
        .unwrap();
    assert_eq!(vb.profiles[0].stacks, before);
    assert_eq!(symbols.counts.missing.load(Relaxed), 1);
    assert_eq!(symbols.counts.passes.load(Relaxed), 0);
}

/// Uploads the file at `path` as `id` for `instance`: the status and body.
fn upload(an: &Proc, id: &str, instance: &str, path: &std::path::Path) -> (u16, String) {
    let url = an.url(&format!(
        "{}?service=svc&instance={instance}",
        heaptide_wire::debuginfo_path(id)
    ));
    let mut r = http()
        .put(&url)
        .send(std::fs::File::open(path).unwrap())
        .unwrap();
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

#[test]
fn only_the_agent_asked_uploads_and_only_the_build_asked_for_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("debug-cache");
    let an = analyzer(
        dir.path(),
        &dir.path().join("h.db"),
        "127.0.0.1:0",
        &["--symbol-cache", cache.to_str().unwrap()],
    );
    let exe = std::env::current_exe().unwrap();
    let id = own_text_mapping().build_id;
    // Refusals that come before the body is read are sent a small one,
    // which the server may not read.
    let small = dir.path().join("small");
    std::fs::write(&small, b"0123456789").unwrap();
    // Nobody was asked yet: refused, nothing kept.
    assert_eq!(upload(&an, &id, "a", &small).0, 409);
    let now = heaptide_analyzer::select::now_ms();
    assert_eq!(posted(&an, &unnamed_wire_batch(now, "a")), vec![id.clone()]);
    // Another instance of the same build is not asked meanwhile, and may
    // not upload.
    assert!(posted(&an, &unnamed_wire_batch(now, "b")).is_empty());
    assert_eq!(upload(&an, &id, "b", &small).0, 409);
    // The agent asked sends another file: refused by its build-id.
    let other = dir.path().join("other");
    std::fs::copy(heaptide_testkit::bin("analyzer"), &other).unwrap();
    let (status, body) = upload(&an, &id, "a", &other);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not ") && body.contains(&id), "{body}");
    let kept = || std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert_eq!(kept(), 0, "nothing of a refused upload is left");
    // A length past the bound is refused before the body is read.
    let head = format!(
        "PUT {}?service=svc&instance=a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        heaptide_wire::debuginfo_path(&id),
        heaptide_analyzer::symbols::MAX_FILE_BYTES + 1
    );
    let r = heaptide_testkit::raw::exchange("127.0.0.1".parse().unwrap(), an.addr, head.as_bytes())
        .unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    // The right file is kept, and the next profile is named.
    let (status, body) = upload(&an, &id, "a", &exe);
    assert_eq!(status, 201, "{body}");
    assert!(cache.join(&id).is_file());
    assert!(posted(&an, &unnamed_wire_batch(now + 1_000, "b")).is_empty());
    let m = an.get("/metrics").1;
    assert!(m.contains("heaptide_symbolization_passes_total 1"), "{m}");
    assert!(m.contains("heaptide_debuginfo_uploads_total 1"), "{m}");
}

/// A debuginfod server (a real HTTP server on loopback, answering as
/// debuginfod does) serves the debug file the analyzer lacks; a build-id
/// it does not have is a 404, and leaves the addresses as they came.
#[test]
fn a_debuginfod_server_supplies_the_debug_file() {
    use std::io::{BufRead, BufReader, Write};
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let id = own_text_mapping().build_id;
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.local_addr().unwrap());
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = asked.clone();
    let served = id.clone();
    std::thread::spawn(move || {
        for conn in server.incoming().take(8).flatten() {
            let mut line = String::new();
            let _ = BufReader::new(&conn).read_line(&mut line);
            let path = line.split(' ').nth(1).unwrap_or("").to_owned();
            log.lock().unwrap().push(path.clone());
            let mut conn = conn;
            if path == format!("/buildid/{served}/debuginfo") {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    exe.len()
                );
                let _ = conn
                    .write_all(head.as_bytes())
                    .and_then(|()| conn.write_all(&exe));
            } else {
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
    let limits = Limits::default().profile;
    let symbols = Symbols::new(Vec::new(), Some(url), dir.path().join("cache"));
    let now = heaptide_analyzer::select::now_ms();
    let mut vb = unnamed_batch(now);
    let lacking = symbols.name_batch(&mut vb, &store, &limits).unwrap();
    assert!(lacking.is_empty(), "{lacking:?}");
    assert!(
        first_frame(&vb).ends_with("a_function_the_analyzer_names"),
        "{}",
        first_frame(&vb)
    );
    assert_eq!(
        *asked.lock().unwrap(),
        vec![format!("/buildid/{id}/debuginfo")]
    );
    assert!(dir.path().join("cache").join(&id).is_file());
    // A build-id the server does not have: asked once, then not again
    // for a while; nothing named.
    assert_eq!(
        symbols.without_files(&["abcdef01".into()]),
        vec!["abcdef01".to_owned()]
    );
    assert_eq!(
        symbols.without_files(&["abcdef01".into()]),
        vec!["abcdef01".to_owned()]
    );
    let asked = asked.lock().unwrap().clone();
    assert_eq!(
        asked.iter().filter(|p| p.contains("abcdef01")).count(),
        1,
        "{asked:?}"
    );
}

/// What an agent announces names files: anything but a build-id is
/// refused, naming the field.
#[test]
fn an_announced_object_must_be_a_build_id() {
    let now = heaptide_analyzer::select::now_ms();
    let mut b = fixtures::batch(fixtures::agent("svc", "a", 1, now - 60_000), 1, now);
    b.heap_profiling.unnamed_objects = vec!["../../etc/passwd".into()];
    let e = accept(b, &Limits::default(), now).unwrap_err().to_string();
    assert!(e.contains("heap_profiling.unnamed_objects"), "{e}");
}

/// Reads its file and pauses 50 ms after each MiB: a slow link.
struct Slow(std::fs::File, u64);

impl std::io::Read for Slow {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let at_most = buf.len().min(64 << 10);
        let n = self.0.read(&mut buf[..at_most])?;
        self.1 += n as u64;
        if self.1 >= 1 << 20 {
            self.1 = 0;
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(n)
    }
}

/// An upload's deadline grows with its length: a binary sent slowly lands
/// long after the request timeout, and an upload that stalls is still cut
/// off, at the timeout and its length at a MiB a second.
#[test]
fn a_slow_upload_lands_past_the_request_timeout_and_a_stalled_one_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--request-timeout", "1s"];
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &args);
    let id = own_text_mapping().build_id;
    let now = heaptide_analyzer::select::now_ms();
    assert_eq!(posted(&an, &unnamed_wire_batch(now, "a")), vec![id.clone()]);
    let path = format!(
        "{}?service=svc&instance=a",
        heaptide_wire::debuginfo_path(&id)
    );

    // 2 MiB declared, 1 KiB sent: cut off after 1 s and 2 s.
    let started = std::time::Instant::now();
    let mut head = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        2 << 20
    )
    .into_bytes();
    head.extend_from_slice(&[0; 1024]);
    let r = heaptide_testkit::raw::exchange("127.0.0.1".parse().unwrap(), an.addr, &head).unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("longer than 3s"), "{}", r.body);
    assert!(started.elapsed() >= std::time::Duration::from_secs(3));

    let exe = std::env::current_exe().unwrap();
    let len = std::fs::metadata(&exe).unwrap().len();
    let started = std::time::Instant::now();
    let mut resp = http()
        .put(&an.url(&path))
        .header("Content-Length", &len.to_string())
        .send(ureq::SendBody::from_owned_reader(Slow(
            std::fs::File::open(&exe).unwrap(),
            0,
        )))
        .unwrap();
    let took = started.elapsed();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(resp.status().as_u16(), 201, "{body}");
    assert!(took > std::time::Duration::from_secs(1), "{took:?}");
}
