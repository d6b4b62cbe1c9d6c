//! Analyzers on a real ClickHouse (Debian's `clickhouse-server`, started
//! by the test with a private data path on loopback ports): two stateless
//! analyzers sharing one database, and the faults a networked store
//! brings: unreachable at start, lost while serving, wrong credentials.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use heaptide_testkit::clickhouse::{database, ClickHouse, PASSWORD};
use heaptide_tests::*;

/// Loads the leaky services at `urls` (their `/` with no path), one
/// request each in turn, until `stop` is set.
fn load(urls: Vec<String>, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let mut n = 0usize;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for u in &urls {
            let route = ["/leak?kb=16", "/work"][n % 2];
            let (status, body) = get(&format!("{u}{route}"));
            assert_eq!(status, 200, "{route}: {body}");
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(8));
    }
}

#[test]
fn two_analyzers_on_one_clickhouse_find_both_leaks_through_either() {
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start();
    let url = ch.url(&database("fleet"));
    let store = Path::new(&url);
    let every = ["--evaluate-every", "2s"];
    let an0 = analyzer(
        dir.path(),
        store,
        "127.0.0.1:0",
        &[&every[..], &["--shard", "0/2"]].concat(),
    );
    let an1 = analyzer(
        dir.path(),
        store,
        "127.0.0.1:0",
        &[&every[..], &["--shard", "1/2"]].concat(),
    );
    let env = [
        ("HEAPTIDE_PROFILE_INTERVAL", "1s"),
        ("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB"),
    ];
    let a = leaky(dir.path(), &format!("http://{}", an0.addr), "leak-a", &env);
    let b = leaky(dir.path(), &format!("http://{}", an1.addr), "leak-b", &env);
    // The leaks go on while they are judged: judged after the load
    // stopped, the flat stretch since could end the regime judged.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loading = {
        let (urls, stop) = (vec![a.url(""), b.url("")], stop.clone());
        std::thread::spawn(move || load(urls, stop))
    };
    std::thread::sleep(Duration::from_secs(60));
    // The command reads the store itself: both instances, whichever
    // analyzer took their data.
    let v = leaks_json(store);
    for instance in ["leak-a", "leak-b"] {
        let heap = finding_of(&v, "heap", instance);
        let (frames, app) = top_site(heap);
        assert!(
            frames[app].contains("leak_request_buffer"),
            "{instance}'s top site: {frames:?}"
        );
    }
    // And each analyzer's API sees the instance the other one ingested.
    for (an, other) in [(&an0, "leak-b"), (&an1, "leak-a")] {
        let v = an.get_json(&format!("/v1/leaks?since=10m&instance={other}"));
        assert!(
            finding(&v, "heap").is_some(),
            "analyzer {} has no heap finding for {other}: {v:#}",
            an.addr
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    loading.join().unwrap();
}

/// `analyzer ARGS`, returning (exit code, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(bin("analyzer"));
    cmd.args(args)
        .env_remove("HEAPTIDE_CLICKHOUSE_USER")
        .env_remove("HEAPTIDE_CLICKHOUSE_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unreachable_store_at_start_is_named() {
    let port = unused_fixed_addr().port();
    let url = format!("clickhouse://127.0.0.1:{port}/heaptide");
    let (code, err) = run(&["serve", "--listen", "127.0.0.1:0", "--store", &url], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("clickhouse://default@127.0.0.1:{port}/heaptide"))
            && err.contains("unreachable"),
        "{err}"
    );
}

#[test]
fn wrong_credentials_name_the_user_and_never_the_password() {
    let ch = ClickHouse::shared();
    let db = database("creds");
    let wrong = ch.url_as("heaptide", "not-the-password", &db);
    for cmd in [&["serve", "--listen", "127.0.0.1:0"][..], &["stats"][..]] {
        let (code, err) = run(&[cmd, &["--store", &wrong]].concat(), &[]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("user \"heaptide\""), "{err}");
        assert!(
            !err.contains("not-the-password"),
            "the password leaked: {err}"
        );
    }
    // The right ones from the environment, with the URL naming no user.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin("analyzer"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--store", &ch.url(&db)])
        .env("HEAPTIDE_CLICKHOUSE_USER", "heaptide")
        .env("HEAPTIDE_CLICKHOUSE_PASSWORD", PASSWORD);
    let an = Proc::start(cmd, dir.path().join("serve.log"));
    assert_eq!(an.get("/v1/services").0, 200, "{}", an.stderr());
    let (code, err) = run(
        &["stats", "--store", &ch.url(&db)],
        &[
            ("HEAPTIDE_CLICKHOUSE_USER", "heaptide"),
            ("HEAPTIDE_CLICKHOUSE_PASSWORD", PASSWORD),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
}

/// One batch of `instance` with a `heap.allocated` sample at `ts_ms`.
fn batch(seq: u64, ts_ms: i64) -> Vec<u8> {
    let mut b = fixtures::batch(fixtures::agent("svc", "i", 1, ts_ms - 60_000), seq, ts_ms);
    b.samples
        .push(fixtures::metrics(ts_ms, &[("heap.allocated", seq as f64)]));
    serde_json::to_vec(&b).unwrap()
}

fn post(an: &Proc, body: &[u8]) -> raw::RawResponse {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    raw::post_from(lo, an.addr, "/v1/ingest", &[], body).unwrap()
}

#[test]
fn a_store_lost_while_serving_is_a_503_with_retry_after_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut ch = ClickHouse::start();
    let url = ch.url(&database("lost"));
    let an = analyzer(dir.path(), Path::new(&url), "127.0.0.1:0", &[]);
    let t0 = now_ms();
    assert_eq!(post(&an, &batch(1, t0)).status, 200);
    ch.stop();
    let refused = post(&an, &batch(2, t0 + 1_000));
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.header("retry-after").is_some(), "{refused:?}");
    // Reads say the store is away too, rather than show nothing.
    assert_eq!(an.get("/v1/services").0, 503);
    ch.resume();
    // The agent sends the refused batch again: now it is stored, and the
    // one acknowledged before the loss is still there.
    assert_eq!(post(&an, &batch(2, t0 + 1_000)).status, 200);
    let series = an.get_json(&format!(
        "/v1/series?service=svc&instance=i&metric=heap.allocated&from={}&to={}",
        t0 - 1,
        t0 + 2_000
    ));
    let values: Vec<f64> = series["points"]
        .as_array()
        .unwrap_or_else(|| panic!("{series:#}"))
        .iter()
        .map(|p| p["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, vec![1.0, 2.0], "{series:#}");
}
