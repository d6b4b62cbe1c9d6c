//! Chaos with real processes: an analyzer killed again and again under a
//! fleet, a store whose disk fills, and an analyzer that hangs or answers
//! garbage. Every loop here is bounded in count and in time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heaptide_analyzer::store::SqliteStore;
use heaptide_tests::*;
use heaptide_wire::*;

const SVC: &str = "chaos";

fn batch(instance: &str, seq: u64, metrics: &[(&str, f64)]) -> Vec<u8> {
    let now = now_ms();
    let mut b = heaptide_testkit::fixtures::batch(
        heaptide_testkit::fixtures::agent(SVC, instance, 7, now - 3_600_000),
        seq,
        now,
    );
    b.samples
        .push(heaptide_testkit::fixtures::metrics(now, metrics));
    serde_json::to_vec(&b).unwrap()
}

/// (status, Retry-After) of one upload; 0 when the analyzer is gone.
fn send(url: &str, body: &[u8]) -> (u16, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        .build()
        .into();
    match agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
    {
        Ok(r) => (
            r.status().as_u16(),
            r.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ),
        Err(_) => (0, None),
    }
}

/// Every value the analyzer holds for one instance's `metric`.
fn stored(an: &Proc, instance: &str, metric: &str) -> BTreeSet<i64> {
    an.get_json(&format!(
        "/v1/series?service={SVC}&instance={instance}&metric={metric}&since=2h"
    ))["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_f64().unwrap() as i64)
        .collect()
}

fn integrity(path: &std::path::Path) -> String {
    SqliteStore::open(path).unwrap().integrity_check().unwrap()
}

/// 50 agents send numbered batches, retrying each until it is
/// acknowledged, while the analyzer is SIGKILLed 20 times. Every
/// acknowledged batch is in the store afterwards, and the store passes
/// SQLite's integrity check after every kill.
#[test]
fn no_acknowledged_batch_is_lost_across_twenty_sigkills() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let mut an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let listen = an.addr.to_string();
    let url = an.url(INGEST_PATH);
    let acked: Arc<Mutex<BTreeMap<usize, BTreeSet<i64>>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let agents: Vec<_> = (0..50)
        .map(|i| {
            let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seq = 1u64;
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let body = batch(&format!("a-{i}"), seq, &[("fds", seq as f64)]);
                    if send(&url, &body).0 == 200 {
                        acked
                            .lock()
                            .unwrap()
                            .entry(i)
                            .or_default()
                            .insert(seq as i64);
                        seq += 1;
                    } else {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        })
        .collect();
    let mut rng = fastrand::Rng::with_seed(20);
    for round in 0..20 {
        std::thread::sleep(Duration::from_millis(rng.u64(150..450)));
        an.kill();
        assert_eq!(integrity(&store), "ok", "after kill {round}");
        an = analyzer(dir.path(), &store, &listen, &[]);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for a in agents {
        a.join().unwrap();
    }
    let acked = acked.lock().unwrap();
    let total: usize = acked.values().map(BTreeSet::len).sum();
    assert!(total > 500, "only {total} batches were acknowledged");
    for (i, seqs) in acked.iter() {
        let have = stored(&an, &format!("a-{i}"), "fds");
        let lost: Vec<_> = seqs.difference(&have).collect();
        assert!(lost.is_empty(), "a-{i} lost acknowledged batches {lost:?}");
    }
}

/// A tmpfs of `size`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: std::path::PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system holding `path` until a write fails.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![7u8; 64 << 10];
    for _ in 0..100_000 {
        if f.write_all(&block).and_then(|_| f.sync_all()).is_err() {
            return;
        }
    }
    panic!("the disk never filled");
}

/// A store whose disk fills answers 503 with Retry-After and keeps what it
/// acknowledged; once space returns it takes batches again, and a metric
/// refused during the outage gets its own id, not one the cache made up.
#[test]
fn a_full_disk_is_a_503_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(dir.path().join("disk"), "4m");
    let store = disk.0.join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let url = an.url(INGEST_PATH);
    for seq in 1..=5 {
        assert_eq!(
            send(&url, &batch("full", seq, &[("fds", seq as f64)])).0,
            200
        );
    }
    fill(&disk.0.join("filler"));
    // New metric names need new rows: the first batch that cannot be
    // written is refused with a 503 and a Retry-After.
    let mut refused = None;
    for seq in 6..200u64 {
        let name = format!("m.poison{seq}");
        let (status, retry) = send(
            &url,
            &batch("full", seq, &[(&name, 1.0), ("fds", seq as f64)]),
        );
        match status {
            200 => continue,
            503 => {
                assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|s| s >= 1)));
                refused = Some((seq, name));
                break;
            }
            other => panic!("status {other} on a full disk"),
        }
    }
    let (seq, poisoned) = refused.expect("a full disk never refused a batch");
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    // Space is back: a new name, then the refused one, each with its own value.
    let fresh = "m.fresh";
    assert_eq!(send(&url, &batch("full", seq + 1, &[(fresh, 2.0)])).0, 200);
    assert_eq!(
        send(&url, &batch("full", seq + 2, &[(&poisoned, 3.0)])).0,
        200
    );
    assert_eq!(stored(&an, "full", fresh), BTreeSet::from([2]));
    assert_eq!(stored(&an, "full", &poisoned), BTreeSet::from([3]));
    let fds = stored(&an, "full", "fds");
    assert!((1..=5).all(|s| fds.contains(&s)), "{fds:?}");
    drop(an);
    assert_eq!(integrity(&store), "ok");
}

/// Starts a listener that, for every connection, does `answer` in a
/// thread; returns its address.
fn bad_analyzer(answer: fn(std::net::TcpStream)) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming().take(10_000).flatten() {
            std::thread::spawn(move || answer(conn));
        }
    });
    addr
}

/// Requests per second the leaky service serves on `/work` for `secs`,
/// and its RSS in MiB at the end.
fn host_under_load(endpoint: &str, secs: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let svc = leaky(
        dir.path(),
        endpoint,
        "host",
        &[("HEAPTIDE_INTERVAL", "100ms")],
    );
    let agent = http();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) && n < 1_000_000 {
        let (status, _) = {
            let mut r = agent.get(svc.url("/work")).call().unwrap();
            (r.status().as_u16(), r.body_mut().read_to_string())
        };
        assert_eq!(status, 200);
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let rss = resident(svc.child.id()).now_mib;
    assert!(rss > 0.0, "the host's RSS could not be read");
    (rate, rss)
}

/// An analyzer that accepts and never answers, or answers garbage,
/// changes neither the host's throughput nor its memory beyond the
/// agent's queue bound, measured side by side with a healthy analyzer.
#[test]
fn a_hung_or_garbage_analyzer_leaves_the_host_alone() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &[]);
    let hung = bad_analyzer(|conn| {
        std::thread::sleep(Duration::from_secs(60));
        drop(conn);
    });
    let garbage = bad_analyzer(|mut conn| {
        use std::io::Write;
        let noise: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n");
        let _ = conn.write_all(&noise);
    });
    let (healthy_rate, healthy_rss) = host_under_load(&format!("http://{}", an.addr), 6);
    for (name, addr) in [("hung", hung), ("garbage", garbage)] {
        let (rate, rss) = host_under_load(&format!("http://{addr}"), 6);
        eprintln!(
            "{name}: {rate:.0} req/s ({:.2} of healthy {healthy_rate:.0}), RSS {rss:.1} MiB (healthy {healthy_rss:.1})",
            rate / healthy_rate
        );
        // Generous bounds: this machine is shared with the build; the
        // point is that a bad analyzer never stalls the host.
        assert!(
            rate > 0.5 * healthy_rate,
            "{name}: {rate:.0} vs {healthy_rate:.0} req/s"
        );
        assert!(
            rss < healthy_rss + 8.0,
            "{name}: {rss:.1} vs {healthy_rss:.1} MiB"
        );
    }
}
