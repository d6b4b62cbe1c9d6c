//! The age of live memory through a real `analyzer serve`: ages sent with
//! profiles are stored, rank old-and-accumulating sites first, and draw
//! the `old` flamegraph; ages that point past a profile are refused.

use std::process::Command;

use heaptide_testkit::fixtures::*;
use heaptide_testkit::*;
use heaptide_wire::StackAges;

const MIN: i64 = 60_000;

fn post(an: &Proc, b: &heaptide_wire::Batch) -> u16 {
    http()
        .post(&an.url(heaptide_wire::INGEST_PATH))
        .header("Content-Type", "application/json")
        .send(&serde_json::to_vec(b).unwrap()[..])
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Twenty profiles a minute apart in which two sites grow alike: the
/// young one (a queue filling under load: all its bytes under ten
/// seconds old) a little faster than the old one (nothing it holds is
/// ever freed: its bytes are ten minutes to an hour old).
fn send_history(an: &Proc) {
    let start = now_ms() - 21 * MIN;
    for k in 0..20i64 {
        let ts = start + k * MIN;
        let wobble = (k * 7 % 5) * 20_000;
        let (young, old) = (
            1_000_000 + k * 550_000 + wobble,
            1_000_000 + k * 500_000 - wobble,
        );
        let mut b = batch(agent("svc", "i", 7, start - MIN), k as u64 + 1, ts);
        // The heap every 10 s, with a little noise.
        for j in 0..6 {
            let t = ts + j * 10_000;
            let heap = (young + old + j * 175_000 + (k * 7 + j) % 5 * 1000) as f64;
            b.samples.push(metrics(t, &[("heap.allocated", heap)]));
        }
        let mut p = heap_profile(
            ts,
            &[
                stack(&["queue_requests", "main"], young, young / 100),
                stack(&["keep_sessions", "main"], old, old / 100),
            ],
        );
        let ages = |bucket: usize, bytes: i64| {
            let mut a = [0u64; heaptide_wire::AGE_BUCKETS_SECS.len()];
            a[bucket] = bytes as u64;
            a
        };
        p.ages = vec![
            StackAges {
                sample: 0,
                bytes: ages(0, young),
            },
            StackAges {
                sample: 1,
                bytes: ages(3, old),
            },
        ];
        b.profiles.push(p);
        assert_eq!(post(an, &b), 200);
    }
}

#[test]
fn old_and_accumulating_memory_ranks_first_and_has_its_own_flamegraph() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    send_history(&an);

    let out = Command::new(bin("analyzer"))
        .args(["leaks", "--since", "1h", "--format", "json", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let heap = v["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["resource"] == "heap"))
        .unwrap_or_else(|| panic!("no heap finding: {v:#}"));
    let sites = heap["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 2, "{heap:#}");
    assert_eq!(sites[0]["frames"][0], "keep_sessions", "{heap:#}");
    assert_eq!(sites[0]["old_share"], 1.0, "{heap:#}");
    assert_eq!(sites[1]["frames"][0], "queue_requests", "{heap:#}");
    assert_eq!(sites[1]["old_share"], 0.0, "{heap:#}");

    let (code, svg) = an.get("/ui/flame.svg?service=svc&instance=i&kind=old&older=600");
    assert_eq!(code, 200, "{svg}");
    assert!(svg.contains("keep_sessions"), "the old site is drawn");
    assert!(!svg.contains("queue_requests"), "the young site is not");
    let (code, page) = an.get("/ui/flame?service=svc&instance=i&kind=old");
    assert_eq!(code, 200);
    assert!(page.contains("older than 10m"), "{page}");
}

#[test]
fn ages_past_the_profile_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &[]);
    let ts = now_ms();
    let mut b = batch(agent("svc", "i", 7, ts - MIN), 1, ts);
    let mut p = heap_profile(ts, &[stack(&["f", "main"], 1000, 10)]);
    p.ages = vec![StackAges {
        sample: 1,
        bytes: [1; heaptide_wire::AGE_BUCKETS_SECS.len()],
    }];
    b.profiles.push(p);
    let resp = http()
        .post(&an.url(heaptide_wire::INGEST_PATH))
        .header("Content-Type", "application/json")
        .send(&serde_json::to_vec(&b).unwrap()[..])
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body = resp.into_body().read_to_string().unwrap();
    assert!(body.contains("profiles[0].ages"), "{body}");
}
