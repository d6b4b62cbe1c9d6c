//! Hostile clients for the connection tests and benchmarks: many
//! connections from one loopback address that send headers a byte at a
//! time, send nothing, or ask for responses and never read them, and a
//! probe that times an honest client's requests from another address.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What each hostile connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Half a request line, then one more header byte every 2 s.
    Slowloris,
    /// Connects and sends nothing.
    Idle,
    /// Pipelines `GET path` requests whose responses add up to far more
    /// than the socket buffers, and never reads.
    NonReader { path: &'static str, requests: usize },
}

/// How the connections of an attack ended, so far.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Connections that the kernel accepted.
    pub opened: usize,
    /// Connections that could not be made at all.
    pub failed: usize,
    /// Connections the server closed, with how long each was open.
    pub closed_after: Vec<Duration>,
}

/// A running attack, stopped (its connections closed) when dropped.
pub struct Attack {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Attack {
    /// Opens `count` connections from `source` to `addr`, each behaving
    /// as `behaviour`, on a thread of its own.
    pub fn start(behaviour: Behaviour, source: IpAddr, addr: SocketAddr, count: usize) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (s, t) = (stop.clone(), tally.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(run(behaviour, source, addr, count, s, t));
        });
        Attack {
            stop,
            tally,
            thread: Some(thread),
        }
    }

    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }

    /// Waits until `n` connections have been opened, within `limit`.
    pub fn wait_opened(&self, n: usize, limit: Duration) -> Tally {
        crate::wait_for("the attack's connections", limit, || {
            let t = self.tally();
            (t.opened + t.failed >= n).then_some(t)
        })
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(
    behaviour: Behaviour,
    source: IpAddr,
    addr: SocketAddr,
    count: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) {
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let conn = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            if matches!(behaviour, Behaviour::NonReader { .. }) {
                // A small window, as a real attacker would set, so that
                // the server's writes stall after little data.
                socket.set_recv_buffer_size(4096)?;
            }
            socket.connect(addr).await
        };
        let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(5), conn).await else {
            tally.lock().unwrap().failed += 1;
            continue;
        };
        tally.lock().unwrap().opened += 1;
        let (stop, tally) = (stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let opened = Instant::now();
            if behave(behaviour, conn, &stop).await {
                tally.lock().unwrap().closed_after.push(opened.elapsed());
            }
        }));
    }
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
}

/// Plays `behaviour` on `conn` until the server closes it (true) or the
/// attack stops (false).
async fn behave(behaviour: Behaviour, mut conn: tokio::net::TcpStream, stop: &AtomicBool) -> bool {
    let (mut rd, mut wr) = conn.split();
    match behaviour {
        Behaviour::Slowloris => {
            if wr.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.is_err() {
                return true;
            }
            let drip =
                b"st: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for b in drip.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                let mut buf = [0u8; 512];
                tokio::select! {
                    r = rd.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { return true },
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                if wr.write_all(&[*b]).await.is_err() {
                    return true;
                }
            }
            false
        }
        Behaviour::Idle => until_closed(&mut rd, stop).await,
        Behaviour::NonReader { path, requests } => {
            let one = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            // The write itself may stall once the server stops reading;
            // that is part of the attack, not a failure.
            let all = one.repeat(requests);
            let write = wr.write_all(all.as_bytes());
            let _ = tokio::time::timeout(Duration::from_secs(2), write).await;
            // Never read. A write to a connection the server closed fails
            // by the second try, so one more whole request now and then
            // finds the close, and is harmless while the server is open.
            loop {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                let probe = wr.write_all(one.as_bytes());
                if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(100), probe).await {
                    return true;
                }
            }
        }
    }
}

/// Reads and discards until the server closes (true) or the attack stops.
async fn until_closed(rd: &mut tokio::net::tcp::ReadHalf<'_>, stop: &AtomicBool) -> bool {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let r = tokio::time::timeout(Duration::from_millis(200), rd.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = r {
            return true;
        }
    }
    false
}

/// Times `GET /healthz` from 127.0.0.1, one request every `every`, for
/// `span`; a request that fails counts as `Duration::MAX`.
pub fn probe(addr: SocketAddr, span: Duration, every: Duration) -> Vec<Duration> {
    let started = Instant::now();
    let mut times = Vec::new();
    while started.elapsed() < span {
        let t = Instant::now();
        let r = crate::raw::exchange(
            IpAddr::from([127, 0, 0, 1]),
            addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        times.push(match r {
            Ok(r) if r.status == 200 => t.elapsed(),
            _ => Duration::MAX,
        });
        std::thread::sleep(every.saturating_sub(t.elapsed()));
    }
    times
}

/// The `q` quantile of `times` (nearest rank).
pub fn quantile(times: &[Duration], q: f64) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    let i = ((t.len() as f64 * q).ceil() as usize).clamp(1, t.len().max(1)) - 1;
    t.get(i).copied().unwrap_or(Duration::ZERO)
}

/// `analyzer serve` with a soft open-file limit of 1,024, as many systems
/// start a service, and `extra`.
pub fn analyzer_at_1024(dir: &std::path::Path, extra: &[&str]) -> crate::Proc {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -Sn 1024 && exec "$0" "$@""#)
        .arg(crate::bin("analyzer"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(dir.join("h.db"))
        .args(extra)
        .env_remove("HEAPTIDE_TOKEN")
        .env("RUST_LOG", "warn");
    crate::Proc::start(cmd, dir.join("analyzer.log"))
}

/// Raises this process's soft limit on open files to its hard limit, so
/// that a test can open thousands of connections; returns the new limit.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    hard
}
