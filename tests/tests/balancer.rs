//! The configuration of docs/scale-out.md, tested: two analyzers on one
//! ClickHouse behind a real HAProxy (Debian's `haproxy`, started by the
//! test on loopback ports), health-checked on `/health`. A browser signs in
//! through the balancer and stays signed in whichever analyzer answers;
//! ingest is spread over both; and one analyzer is killed under load
//! (`HEAPTIDE_KILLS` times, 2 by default) with no acknowledged batch lost.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heaptide_testkit::clickhouse::{database, ClickHouse};
use heaptide_testkit::fixtures;
use heaptide_testkit::*;
use heaptide_wire::INGEST_PATH;

const INGEST: &str = "balanced-ingest-token-0001";
const READ: &str = "balanced-read-token-000002";
const INSTANCES: usize = 8;

/// HAProxy in the foreground, killed when dropped.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy_binary() -> &'static str {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("haproxy is not installed: run ./test.sh, which installs Debian's haproxy")
}

/// The balancer of docs/scale-out.md, in front of `backends`.
fn haproxy(dir: &Path, front: SocketAddr, backends: &[SocketAddr]) -> Haproxy {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("  server an{i} {b} check inter 300ms fall 2 rise 2\n"))
        .collect();
    let cfg = format!(
        "global\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  \
         retries 3\n  option redispatch\n  retry-on conn-failure\n\
         frontend heaptide\n  bind {front}\n  default_backend analyzers\n\
         backend analyzers\n  balance roundrobin\n  option httpchk GET /health\n  \
         http-check expect status 200\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
    let child = Command::new(haproxy_binary())
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("haproxy starts");
    Haproxy(child)
}

struct Fleet {
    dir: std::path::PathBuf,
    store: String,
    addrs: [SocketAddr; 2],
}

impl Fleet {
    fn start(&self, i: usize) -> Proc {
        let d = &self.dir;
        let (tokens, key) = (d.join("tokens.toml"), d.join("session-key"));
        let shard = format!("{i}/2");
        let args = [
            "--shard",
            shard.as_str(),
            "--tokens-file",
            tokens.to_str().unwrap(),
            "--session-key-file",
            key.to_str().unwrap(),
        ];
        let listen = self.addrs[i].to_string();
        analyzer(d, Path::new(&self.store), &listen, &args)
    }
}

/// Posts batches through the balancer until `stop`, each sent again until
/// acknowledged, as an agent does; returns the acknowledged sample times
/// by instance, and how many sends failed.
fn load(front: SocketAddr, stop: Arc<AtomicBool>) -> (BTreeMap<String, Vec<i64>>, usize) {
    let url = format!("http://{front}{INGEST_PATH}");
    let http = http();
    let mut acked: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let (start, mut failed, mut n) = (now_ms() - 600_000, 0, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let instance = format!("lb-{}", n as usize % INSTANCES);
        let ts = start + n as i64 * 1000;
        let agent = fixtures::agent("balanced", &instance, 7, start - 60_000);
        let mut b = fixtures::batch(agent, n / INSTANCES as u64 + 1, now_ms());
        b.samples.push(fixtures::metrics(ts, &[("fds", n as f64)]));
        let body = serde_json::to_vec(&b).unwrap();
        for _ in 0..100 {
            let sent = http
                .post(&url)
                .header("Authorization", format!("Bearer {INGEST}"))
                .header("Content-Type", "application/json")
                .send(&body[..]);
            if matches!(sent.map(|r| r.status().as_u16()), Ok(200)) {
                acked.entry(instance.clone()).or_default().push(ts);
                break;
            }
            failed += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        n += 1;
    }
    (acked, failed)
}

/// Three free loopback addresses, each held while the next is found.
fn distinct_fixed_addrs() -> [SocketAddr; 3] {
    let mut held = Vec::new();
    for _ in 0..3 {
        let a = unused_fixed_addr();
        held.push(std::net::TcpListener::bind(a).expect("a free address"));
    }
    let addr = |i: usize| held[i].local_addr().unwrap();
    [addr(0), addr(1), addr(2)]
}

#[test]
fn two_analyzers_behind_haproxy_share_sign_in_and_lose_no_acknowledged_batch() {
    let kills: usize = std::env::var("HEAPTIDE_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(2);
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::shared();
    std::fs::write(
        dir.path().join("tokens.toml"),
        format!(
            "[[token]]\nname = \"agents\"\nkind = \"ingest\"\nsecret = \"{INGEST}\"\n\
             [[token]]\nname = \"people\"\nkind = \"read\"\nsecret = \"{READ}\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("session-key"),
        "a-key-every-analyzer-shares-0123456789",
    )
    .unwrap();
    let addrs = distinct_fixed_addrs();
    let fleet = Fleet {
        dir: dir.path().to_owned(),
        store: ch.url(&database("balanced")),
        addrs: [addrs[0], addrs[1]],
    };
    let mut ans = [Some(fleet.start(0)), Some(fleet.start(1))];
    let front = addrs[2];
    let _lb = haproxy(dir.path(), front, &fleet.addrs);
    let through = |path: &str| format!("http://{front}{path}");
    wait_for("the balancer", Duration::from_secs(20), || {
        (get(&through("/health")).0 == 200).then_some(())
    });

    // Sign in through the balancer; every page after, from either analyzer.
    let no_redirects = no_redirects();
    let r = no_redirects
        .post(through("/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(format!("token={READ}&next=%2F"))
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap();
    let session = cookie.split(';').next().unwrap().to_owned();
    for _ in 0..6 {
        let r = no_redirects
            .get(through("/"))
            .header("Cookie", &session)
            .call()
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            200,
            "a page through the balancer asked to sign in again"
        );
    }

    // Ingest under load, one analyzer killed and started again `kills` times.
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let loader = std::thread::spawn(move || load(front, s));
    for k in 0..kills {
        std::thread::sleep(Duration::from_millis(1500));
        let victim = k % 2;
        if let Some(mut an) = ans[victim].take() {
            an.kill();
        }
        std::thread::sleep(Duration::from_millis(1500));
        ans[victim] = Some(fleet.start(victim));
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = loader.join().unwrap();
    let total: usize = acked.values().map(Vec::len).sum();
    eprintln!("{total} batches acknowledged, {failed} sends refused or failed, {kills} kills");
    assert!(total >= 20, "{total} batches acknowledged");

    // Every acknowledged sample is in the store, read through the balancer.
    let reader = http();
    let stored = Mutex::new(0usize);
    let deadline = Instant::now() + Duration::from_secs(20);
    for (instance, times) in &acked {
        let path = format!("/v1/series?service=balanced&instance={instance}&metric=fds&since=1h");
        let have: Vec<i64> = wait_for(
            "the acknowledged samples",
            deadline.saturating_duration_since(Instant::now()),
            || {
                let mut r = reader
                    .get(through(&path))
                    .header("Authorization", format!("Bearer {READ}"))
                    .call()
                    .ok()?;
                let v: serde_json::Value =
                    serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()?;
                let have: Vec<i64> = v["points"]
                    .as_array()?
                    .iter()
                    .filter_map(|p| p["ts_ms"].as_i64())
                    .collect();
                times.iter().all(|t| have.contains(t)).then_some(have)
            },
        );
        *stored.lock().unwrap() += have.len();
    }
    assert!(*stored.lock().unwrap() >= total);
}
