//! The attacks `docs/security.md` names, each as a regression test against
//! a real `analyzer serve`: unauthenticated reads, a small hostile pprof,
//! a flood of invented instances, and escape sequences in frame names.

use base64::Engine;
use heaptide_testkit::fixtures;
use heaptide_testkit::*;
use heaptide_wire::pprof::{self, Function, Line, Location, Sample};
use heaptide_wire::{Batch, INGEST_PATH};

/// (status, a header, body) of a GET with `headers`.
fn get_with(url: &str, headers: &[(&str, &str)], header: &str) -> (u16, String, String) {
    let mut req = no_redirects().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.call().unwrap();
    let h = heaptide_testkit::header(&r, header);
    (
        r.status().as_u16(),
        h,
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn post_batch(an: &Proc, batch: &Batch, token: Option<&str>) -> (u16, String) {
    let mut req = http()
        .post(an.url(INGEST_PATH))
        .header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", format!("bearer {t}"));
    }
    let mut r = req.send(&serde_json::to_vec(batch).unwrap()).unwrap();
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn small_batch(instance: &str, now: i64) -> Batch {
    let mut b = fixtures::batch(fixtures::agent("svc", instance, 7, now - 60_000), 1, now);
    b.samples.push(fixtures::metrics(now, &[("fds", 10.0)]));
    b.profiles.push(fixtures::heap_profile(
        now,
        &[fixtures::stack(&["leaf", "main"], 4096, 1)],
    ));
    b
}

fn analyzer_with_tokens(dir: &std::path::Path, extra: &[&str]) -> Proc {
    std::fs::write(dir.join("token"), "w-secret\n").unwrap();
    std::fs::write(dir.join("read-token"), "r-secret\n").unwrap();
    let (w, r) = (dir.join("token"), dir.join("read-token"));
    let mut args = vec![
        "--token-file",
        w.to_str().unwrap(),
        "--read-token-file",
        r.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    analyzer(dir, &dir.join("h.db"), "127.0.0.1:0", &args)
}

#[test]
fn a_browser_signs_in_once_with_an_http_only_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer_with_tokens(dir.path(), &[]);
    let (status, csp, form) = get_with(
        &an.url("/login?next=/ui/service?service=svc"),
        &[],
        "content-security-policy",
    );
    assert_eq!(status, 200);
    assert!(form.contains("type=\"password\""), "{form}");
    let scripts = csp
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .unwrap_or("");
    assert!(
        scripts.contains("'sha256-") && !scripts.contains("unsafe-inline"),
        "{csp}"
    );

    let login = |token: &str| {
        let mut r = no_redirects()
            .post(an.url("/login"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(format!(
                "token={token}&next=%2Fui%2Fservice%3Fservice%3Dsvc"
            ))
            .unwrap();
        let (cookie, location) = (header(&r, "set-cookie"), header(&r, "location"));
        (
            r.status().as_u16(),
            cookie,
            location,
            r.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    let (status, cookie, _, page) = login("nope");
    assert_eq!((status, cookie.as_str()), (401, ""), "{page}");
    assert!(page.contains("does not grant reading"), "{page}");

    let (status, cookie, location, _) = login("r-secret");
    assert_eq!(status, 303);
    assert_eq!(location, "/ui/service?service=svc");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let (status, nosniff, page) = get_with(
        &an.url("/"),
        &[("Cookie", &session)],
        "x-content-type-options",
    );
    assert_eq!(status, 200, "{page}");
    assert_eq!(nosniff, "nosniff");
    // The cookie opens pages, not ingest.
    let mut r = http()
        .post(an.url(INGEST_PATH))
        .header("Cookie", &session)
        .send(&serde_json::to_vec(&small_batch("c", now_ms())).unwrap())
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        403,
        "{}",
        r.body_mut().read_to_string().unwrap()
    );
}

/// The attack that once took the analyzer down, and two relatives that
/// each pass the size caps and break a different budget.
fn hostile_profile(name_bytes: usize, lines: usize, samples: usize, refs: usize) -> Vec<u8> {
    let mut p = pprof::build_heap_profile(&[], 1, 0);
    let name = p.string_table.len() as i64;
    p.string_table.push("x".repeat(name_bytes));
    p.function.push(Function {
        id: 1,
        name,
        system_name: name,
        filename: 0,
        start_line: 0,
    });
    let line = Line {
        function_id: 1,
        line: 1,
    };
    p.location.push(Location {
        id: 1,
        mapping_id: 0,
        address: 0,
        line: vec![line; lines],
    });
    let sample = Sample {
        location_id: vec![1; refs],
        value: vec![1, 1],
    };
    p.sample = vec![sample; samples];
    pprof::encode_gzip(&p)
}

/// A profile of `n` locations with nothing in them: two bytes each on
/// the wire, and a struct each once decoded.
fn many_locations(n: usize) -> Vec<u8> {
    let mut p = pprof::build_heap_profile(&[], 1, 0);
    p.location = (1..=n as u64)
        .map(|id| Location {
            id,
            mapping_id: 0,
            address: 0,
            line: vec![],
        })
        .collect();
    pprof::encode_gzip(&p)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn a_small_hostile_profile_is_refused_by_name_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &[]);
    let now = now_ms();
    let cases = [
        (
            hostile_profile(1 << 20, 1000, 20_000, 300),
            "bytes in one string",
        ),
        (
            hostile_profile(16 << 10, 1000, 20_000, 300),
            "location references",
        ),
        (
            hostile_profile(16 << 10, 500, 2_000, 1),
            "bytes of frame names",
        ),
        (hostile_profile(100, 100, 2_000, 6), "frames in one stack"),
        (many_locations(300_000), "more than 200000 locations"),
    ];
    for (pprof_gz, limit) in cases {
        // Each far inside the body cap: small inputs, large expansions.
        assert!(
            pprof_gz.len() < 1 << 20,
            "{limit}: {} bytes",
            pprof_gz.len()
        );
        let mut b = small_batch("victim", now);
        b.profiles[0].pprof_gz_base64 = base64::engine::general_purpose::STANDARD.encode(&pprof_gz);
        let (status, body) = post_batch(&an, &b, None);
        assert_eq!(status, 400, "{limit}: {body}");
        assert!(body.contains(limit), "{body} does not name {limit:?}");
    }
    // A JSON body that would build millions of tiny entries, gzipped to
    // a few KiB, is refused at the first entry past the limit.
    let mut base = small_batch("v", now);
    base.samples.clear();
    base.profiles.clear();
    let mut sample = format!("\"samples\":[{{\"ts_ms\":{now},\"metrics\":{{");
    for i in 0..300_000 {
        sample.push_str(&format!("\"m{i}\":1,"));
    }
    sample.push_str("\"z\":1}}]");
    let json = serde_json::to_string(&base)
        .unwrap()
        .replace("\"samples\":[]", &sample);
    for (body, limit) in [
        (json.clone(), "more than 2000 entries"),
        (
            " ".repeat(5 << 20) + "{}",
            "larger than 4194304 bytes once decoded",
        ),
    ] {
        let gz = gzip(body.as_bytes());
        assert!(gz.len() < 4 << 20, "{limit}: {} bytes", gz.len());
        let mut r = http()
            .post(an.url(INGEST_PATH))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .send(&gz)
            .unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        assert_eq!(r.status().as_u16(), 400, "{text}");
        assert!(text.contains(limit), "{text} does not name {limit:?}");
    }
    // A plain body is held to the same decoded limit as a gzipped one.
    let plain = " ".repeat(5 << 20) + "{}";
    let mut r = http()
        .post(an.url(INGEST_PATH))
        .header("Content-Type", "application/json")
        .send(plain.as_bytes())
        .unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status().as_u16(), 400, "{text}");
    assert!(
        text.contains("larger than 4194304 bytes once decoded"),
        "{text}"
    );
    // Nothing was stored, and the analyzer still takes a sound batch.
    assert_eq!(post_batch(&an, &small_batch("after", now), None).0, 200);
    let peak = resident(an.child.id()).peak_mib;
    eprintln!("analyzer peak RSS after the hostile profiles: {peak:.1} MiB");
    assert!(peak > 0.0, "the analyzer's RSS could not be read");
    assert!(peak < 256.0, "peak RSS {peak:.1} MiB");
}

#[test]
fn a_service_holds_a_bounded_number_of_instances() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(
        dir.path(),
        &dir.path().join("h.db"),
        "127.0.0.1:0",
        &["--max-instances-per-service", "3"],
    );
    let now = now_ms();
    for i in 0..3 {
        assert_eq!(
            post_batch(&an, &small_batch(&format!("i-{i}"), now), None).0,
            200
        );
    }
    let (status, body) = post_batch(&an, &small_batch("i-3", now), None);
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("max_instances_per_service") && body.contains("\\\"svc\\\""),
        "{body}"
    );
    // Known instances go on being accepted.
    assert_eq!(post_batch(&an, &small_batch("i-0", now + 1), None).0, 200);
    assert_eq!(an_instances(&an), 3);
}

fn an_instances(an: &Proc) -> usize {
    an.get_json("/v1/instances?service=svc")["instances"]
        .as_array()
        .unwrap()
        .len()
}

/// A leaking site whose name carries escape sequences (a window title, a
/// screen clear) is named by `analyzer leaks`, with the escapes made
/// harmless: no ESC or BEL reaches the terminal.
#[test]
fn escape_sequences_in_frame_names_stay_out_of_the_terminal() {
    use heaptide_analyzer::ingest::{accept, Limits};
    use heaptide_analyzer::store::{SqliteStore, Store};
    const MIB: f64 = 1024.0 * 1024.0;
    let evil = "evil\u{1b}]0;pwned\u{7}\u{1b}[2J::leak_here";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let store = SqliteStore::open(&path).unwrap();
    let now = now_ms();
    let t0 = now - 2 * 3_600_000;
    let agent = fixtures::agent("svc", "esc", 7, t0 - 1000);
    for hour in 0..2i64 {
        let mut b = fixtures::batch(agent.clone(), hour as u64 + 1, now);
        for i in 0..360i64 {
            let ts = t0 + (hour * 360 + i) * 10_000;
            let h = (ts - t0) as f64 / 3_600_000.0;
            let heap = 100.0 * MIB + 30.0 * MIB * h + ((i * 37) % 11) as f64 * 65536.0;
            b.samples.push(fixtures::metrics(
                ts,
                &[
                    ("heap.allocated", heap),
                    ("limit.physical_memory", 8192.0 * MIB),
                ],
            ));
            if i % 6 == 0 {
                let stacks = [
                    fixtures::stack(
                        &["alloc::alloc::alloc", evil, "main"],
                        (30.0 * MIB * h) as i64 + 1,
                        i + 1,
                    ),
                    fixtures::stack(&["alloc::alloc::alloc", "steady", "main"], 9 << 20, 9),
                ];
                b.profiles.push(fixtures::heap_profile(ts, &stacks));
            }
        }
        store
            .ingest(&accept(b, &Limits::default(), now).unwrap(), now)
            .unwrap();
    }
    drop(store);
    let out = std::process::Command::new(bin("analyzer"))
        .args(["leaks", "--fresh", "--service", "svc", "--store"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("leak_here"), "the site is named: {text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "escapes reached the terminal: {text:?}"
    );
    // JSON keeps the name exactly, escaped as JSON.
    let json = std::process::Command::new(bin("analyzer"))
        .args([
            "leaks",
            "--fresh",
            "--service",
            "svc",
            "--format",
            "json",
            "--store",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&json.stdout);
    assert!(!raw.contains('\u{1b}'), "{raw:?}");
    assert!(raw.contains("\\u001b]0;pwned"), "{raw}");
}
