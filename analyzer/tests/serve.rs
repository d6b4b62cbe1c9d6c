//! `analyzer serve` as a real process on 127.0.0.1:0: ingest, bad input,
//! auth, restarts and durability under SIGKILL.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use heaptide_testkit::*;
use heaptide_wire::*;

/// A fixed start time per pid, an hour ago.
fn process_start() -> i64 {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *START.get_or_init(|| now_ms() - 3_600_000)
}

fn batch(instance: &str, pid: u32, seq: u64, ts_ms: i64, value: f64) -> Batch {
    let mut metrics = BTreeMap::new();
    metrics.insert("fds".to_owned(), value);
    metrics.insert("heap.allocated".to_owned(), value * 1000.0);
    Batch {
        version: WIRE_VERSION,
        agent: AgentInfo {
            service: "svc".into(),
            instance: instance.into(),
            host: "h".into(),
            pid,
            start_time_ms: process_start() + i64::from(pid),
            agent_version: "test".into(),
            labels: BTreeMap::new(),
        },
        seq,
        sent_at_ms: ts_ms,
        heap_profiling: HeapProfilingStatus {
            enabled: false,
            reason: Some("test".into()),
            sample_period_bytes: None,
            unwinder: None,
            unnamed_objects: Vec::new(),
        },
        agent_stats: AgentStats::default(),
        samples: vec![MetricSample { ts_ms, metrics }],
        pause_events: vec![],
        profiles: vec![],
    }
}

fn post(
    url: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value, Option<String>) {
    let mut req = http().post(url).header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.send(body) {
        Ok(mut r) => {
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let status = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
                retry,
            )
        }
        Err(e) => (0, serde_json::Value::String(e.to_string()), None),
    }
}

fn ingest_url(p: &Proc) -> String {
    p.url(INGEST_PATH)
}

/// Bodies that are each wrong in one way, with the field the 400 must
/// name.
fn bad_bodies(now: i64) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut wrong_type = serde_json::to_value(batch("a", 1, 2, now, 5.0)).unwrap();
    wrong_type["samples"][0]["metrics"]["fds"] = "many".into();
    let mut bad_version = serde_json::to_value(batch("a", 1, 2, now, 5.0)).unwrap();
    bad_version["version"] = 99.into();
    let mut bad_pprof = batch("a", 1, 2, now, 5.0);
    bad_pprof.profiles.push(EncodedProfile {
        ts_ms: now,
        sample_period_bytes: 524288,
        pprof_gz_base64: "!!".into(),
        ages: Vec::new(),
    });
    let mut garbage_pprof = batch("a", 1, 2, now, 5.0);
    garbage_pprof.profiles.push(EncodedProfile {
        ts_ms: now,
        sample_period_bytes: 524288,
        pprof_gz_base64: "AAECAwQ=".into(),
        ages: Vec::new(),
    });
    vec![
        ("malformed json", b"{\"version\": 1, ".to_vec(), "body"),
        (
            "wrong type",
            serde_json::to_vec(&wrong_type).unwrap(),
            "samples[0].metrics.fds",
        ),
        (
            "unknown version",
            serde_json::to_vec(&bad_version).unwrap(),
            "version",
        ),
        (
            "absurd timestamp",
            serde_json::to_vec(&batch("a", 1, 2, 42, 5.0)).unwrap(),
            "sent_at_ms",
        ),
        (
            "future timestamp",
            serde_json::to_vec(&batch("a", 1, 2, now + 10 * 86_400_000, 5.0)).unwrap(),
            "sent_at_ms",
        ),
        (
            "absurd value",
            serde_json::to_vec(&batch("a", 1, 2, now, 1e300)).unwrap(),
            "samples[0].metrics.fds",
        ),
        (
            "bad base64",
            serde_json::to_vec(&bad_pprof).unwrap(),
            "profiles[0].pprof_gz_base64",
        ),
        (
            "bad pprof",
            serde_json::to_vec(&garbage_pprof).unwrap(),
            "profiles[0].pprof_gz_base64",
        ),
    ]
}

/// A gzip bomb and an oversized body: refused, not inflated or read.
fn oversized_bodies_are_refused(url: &str) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..100 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let (status, json, _) = post(url, &bomb, &[("Content-Encoding", "gzip")]);
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["field"], "body");
    // An oversized body is refused on its declared length, before the
    // server reads it; a raw socket shows the answer comes without the body.
    let (host, path) = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
        .unwrap();
    let mut sock = std::net::TcpStream::connect(host).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        sock,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        9 << 20
    )
    .unwrap();
    sock.write_all(&[b' '; 4096]).unwrap();
    let mut head = [0u8; 64];
    let n = std::io::Read::read(&mut sock, &mut head).unwrap();
    let line = String::from_utf8_lossy(&head[..n]);
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
}

#[test]
fn bad_input_gets_a_4xx_naming_the_field_and_harms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &[]);
    let url = ingest_url(&an);
    let now = now_ms();
    let good = serde_json::to_vec(&batch("a", 1, 1, now, 5.0)).unwrap();
    assert_eq!(post(&url, &good, &[]).0, 200);

    for (what, body, field) in bad_bodies(now) {
        let (status, json, _) = post(&url, &body, &[]);
        assert_eq!(status, 400, "{what}: {json}");
        assert_eq!(json["field"], field, "{what}: {json}");
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {json}"
        );
    }
    oversized_bodies_are_refused(&url);

    // The good batch is intact, and the server still ingests.
    assert_eq!(
        post(
            &url,
            &serde_json::to_vec(&batch("a", 1, 3, now + 1, 6.0)).unwrap(),
            &[]
        )
        .0,
        200
    );
    let v = get_json(&an.url("/v1/series?service=svc&instance=a&metric=fds&since=1h"));
    let values: Vec<f64> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, vec![5.0, 6.0]);
    // Read API errors are JSON too, and name the parameter.
    let (status, body) = get(&an.url("/v1/series?metric=fds"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("service"), "{body}");
    let (status, body) = get(&an.url("/v1/series?service=svc&metric=fds&since=soon"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("since"), "{body}");
    assert_eq!(get(&an.url("/v1/instances?service=nope")).0, 404);
}

#[test]
fn tokens_are_required_when_configured_and_open_listeners_refused() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let an = analyzer(
        dir.path(),
        &dir.path().join("h.db"),
        "127.0.0.1:0",
        &["--token-file", token_file.to_str().unwrap()],
    );
    let body = serde_json::to_vec(&batch("a", 1, 1, now_ms(), 1.0)).unwrap();
    assert_eq!(post(&ingest_url(&an), &body, &[]).0, 401);
    assert_eq!(
        post(
            &ingest_url(&an),
            &body,
            &[("Authorization", "Bearer wrong!")]
        )
        .0,
        401
    );
    assert_eq!(
        post(
            &ingest_url(&an),
            &body,
            &[("Authorization", "Bearer s3cret")]
        )
        .0,
        200
    );

    let out = std::process::Command::new(bin("analyzer"))
        .args(["serve", "--listen", "0.0.0.0:0", "--store"])
        .arg(dir.path().join("open.db"))
        .env_remove("HEAPTIDE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a token"), "{err}");
}

/// The limit is keyed on the agent's token and address, both known before
/// the body is read: a burst from one host is limited, whatever names its
/// batches carry, and another host is not.
#[test]
fn each_agent_is_rate_limited_with_retry_after() {
    use heaptide_testkit::raw::post_from;
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(
        dir.path(),
        &dir.path().join("h.db"),
        "127.0.0.1:0",
        &["--rate-limit", "5"],
    );
    let addr = an.addr;
    let host = |n: u8| std::net::IpAddr::from([127, 0, 0, n]);
    let now = now_ms();
    let mut limited = None;
    for seq in 0..100u64 {
        // A new instance name each time: names in the body change nothing.
        let instance = format!("busy-{seq}");
        let body = serde_json::to_vec(&batch(&instance, 1, seq, now + seq as i64, 1.0)).unwrap();
        let r = post_from(host(2), addr, "/v1/ingest", &[], &body).unwrap();
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = limited.expect("100 batches in a burst were never limited");
    assert!(r
        .header("retry-after")
        .and_then(|r| r.parse::<u64>().ok())
        .is_some_and(|s| s >= 1));
    // An agent on another host is unaffected.
    let body = serde_json::to_vec(&batch("calm", 1, 1, now, 1.0)).unwrap();
    assert_eq!(
        post_from(host(3), addr, "/v1/ingest", &[], &body)
            .unwrap()
            .status,
        200
    );
}

#[test]
fn a_new_pid_for_an_instance_is_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &[]);
    let now = now_ms();
    for (pid, seq, dt) in [(10, 1, -3000), (10, 2, -2000), (11, 1, -1000)] {
        let body = serde_json::to_vec(&batch("r", pid, seq, now + dt, 1.0)).unwrap();
        assert_eq!(post(&ingest_url(&an), &body, &[]).0, 200);
    }
    let v = get_json(&an.url("/v1/instances?service=svc"));
    assert_eq!(v["instances"][0]["segments"], 2);
    assert_eq!(v["instances"][0]["pid"], 11);
    let pts = get_json(&an.url("/v1/series?service=svc&instance=r&metric=fds&since=1h"));
    let segs: Vec<i64> = pts["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["segment"].as_i64().unwrap())
        .collect();
    assert_eq!(segs.len(), 3);
    assert_eq!(segs[0], segs[1]);
    assert_ne!(segs[1], segs[2]);
}

#[test]
fn sigkill_during_ingest_loses_no_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let mut an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let addr = an.addr;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, i64)>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = now_ms();
    let senders: Vec<_> = (0..4)
        .map(|a| {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let instance = format!("k{a}");
                for seq in 0..2000u64 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let ts = start + seq as i64;
                    let body =
                        serde_json::to_vec(&batch(&instance, 1, seq, ts, seq as f64)).unwrap();
                    let (status, _, _) = post(&format!("http://{addr}{INGEST_PATH}"), &body, &[]);
                    if status == 200 {
                        acked.lock().unwrap().push((instance.clone(), ts));
                    }
                }
            })
        })
        .collect();
    wait_for("some acknowledged batches", Duration::from_secs(30), || {
        (acked.lock().unwrap().len() > 200).then_some(())
    });
    an.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    for a in 0..4 {
        let instance = format!("k{a}");
        let v = get_json(&an.url(&format!(
            "/v1/series?service=svc&instance={instance}&metric=fds&since=1h"
        )));
        let stored: std::collections::HashSet<i64> = v["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["ts_ms"].as_i64().unwrap())
            .collect();
        for (_, ts) in acked.iter().filter(|(i, _)| *i == instance) {
            assert!(
                stored.contains(ts),
                "acknowledged sample {instance}@{ts} was lost"
            );
        }
    }
}
