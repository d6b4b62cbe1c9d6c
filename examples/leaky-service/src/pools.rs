//! The pool, task and queue routes: a deadpool pool of TCP connections to
//! a backend on loopback (started here, one line per request, as a
//! database would answer), a task leak and a slow consumer.
//!
//! - `GET /pool/query?ms=N`: checks a connection out, sends a query,
//!   holds it N ms (default 5) and gives it back; healthy.
//! - `GET /pool/forget`: checks a connection out, queries, and keeps it
//!   for ever: a connection never returned, the pool leak.
//! - `GET /pool/burst?n=N&ms=M`: N queries at once (default 32), each held
//!   M ms (default 200): the pool saturates, callers wait, then it drains.
//! - `GET /tasks/leak?n=N`: spawns N tasks (default 1) that wait on a
//!   oneshot whose sender is kept and never fires.
//! - `GET /queue/start?per_s=R`: starts a producer of R items/s (default
//!   50) on an unbounded channel, and a consumer 20% slower.
//! - `GET /leak-conn?addr=HOST:PORT`: connects to `addr` and keeps the
//!   connection open for ever: a connection leak to that peer.

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use deadpool::managed::{self, Metrics, Object, RecycleResult};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The pool's size (`LEAKY_POOL_SIZE`, default 16).
fn pool_size() -> usize {
    std::env::var("LEAKY_POOL_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16)
}

/// Connections to the backend, as a database driver's would be.
struct Backend(SocketAddr);

impl managed::Manager for Backend {
    type Type = BufReader<TcpStream>;
    type Error = std::io::Error;

    async fn create(&self) -> Result<Self::Type, Self::Error> {
        Ok(BufReader::new(TcpStream::connect(self.0).await?))
    }

    async fn recycle(&self, _: &mut Self::Type, _: &Metrics) -> RecycleResult<Self::Error> {
        Ok(())
    }
}

type Pool = managed::Pool<Backend>;

static POOL: OnceLock<Pool> = OnceLock::new();
static FORGOTTEN: Mutex<Vec<Object<Backend>>> = Mutex::new(Vec::new());
static NEVER_FIRED: Mutex<Vec<tokio::sync::oneshot::Sender<()>>> = Mutex::new(Vec::new());
static QUEUE_STARTED: OnceLock<()> = OnceLock::new();
static CONNECTIONS: Mutex<Vec<TcpStream>> = Mutex::new(Vec::new());

/// The backend: answers each line with `ok`.
async fn serve_backend(listener: TcpListener) {
    while let Ok((sock, _)) = listener.accept().await {
        tokio::spawn(async move {
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(_)) = lines.next_line().await {
                if w.write_all(b"ok\n").await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Starts the backend and the pool, and hands the pool to the agent.
pub async fn start() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve_backend(listener));
    let pool = Pool::builder(Backend(addr))
        .max_size(pool_size())
        .build()
        .map_err(std::io::Error::other)?;
    heaptide_agent::watch_deadpool("backend", pool.clone());
    let _ = POOL.set(pool);
    Ok(())
}

/// Checks a connection out and sends one query on it.
async fn query() -> Result<Object<Backend>, String> {
    let pool = POOL.get().ok_or("no pool")?;
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    conn.get_mut()
        .write_all(b"select 1\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    conn.read_line(&mut line).await.map_err(|e| e.to_string())?;
    Ok(conn)
}

async fn held_query(ms: u64) -> String {
    match query().await {
        Ok(conn) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            drop(conn);
            "ok\n".into()
        }
        Err(e) => format!("error: {e}\n"),
    }
}

#[derive(serde::Deserialize)]
struct Params {
    ms: Option<u64>,
    n: Option<usize>,
    per_s: Option<u64>,
    addr: Option<String>,
}

pub fn routes() -> Router {
    Router::new()
        .route(
            "/pool/query",
            get(|Query(p): Query<Params>| held_query(p.ms.unwrap_or(5).min(10_000))),
        )
        .route(
            "/pool/forget",
            get(|| async {
                match query().await {
                    Ok(conn) => {
                        let mut kept = FORGOTTEN.lock().unwrap_or_else(|p| p.into_inner());
                        kept.push(conn);
                        format!("{}\n", kept.len())
                    }
                    Err(e) => format!("error: {e}\n"),
                }
            }),
        )
        .route(
            "/pool/burst",
            get(|Query(p): Query<Params>| async move {
                let ms = p.ms.unwrap_or(200).min(10_000);
                let all: Vec<_> = (0..p.n.unwrap_or(32).min(1000))
                    .map(|_| tokio::spawn(held_query(ms)))
                    .collect();
                for t in all {
                    let _ = t.await;
                }
                "ok\n"
            }),
        )
        .route("/tasks/leak", get(leak_tasks))
        .route(
            "/leak-conn",
            get(|Query(p): Query<Params>| async move {
                let addr = p.addr.unwrap_or_default();
                match TcpStream::connect(&addr).await {
                    Ok(c) => {
                        let mut all = CONNECTIONS.lock().unwrap_or_else(|p| p.into_inner());
                        all.push(c);
                        format!("{}\n", all.len())
                    }
                    Err(e) => format!("error: {addr}: {e}\n"),
                }
            }),
        )
        .route(
            "/queue/start",
            get(|Query(p): Query<Params>| async move {
                if QUEUE_STARTED.set(()).is_ok() {
                    start_queue(p.per_s.unwrap_or(50).clamp(1, 10_000));
                }
                "started\n"
            }),
        )
}

async fn leak_tasks(Query(p): Query<Params>) -> String {
    let mut kept = NEVER_FIRED.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..p.n.unwrap_or(1).min(10_000) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = rx.await;
        });
        kept.push(tx);
    }
    format!("{}\n", kept.len())
}

/// A producer of `per_s` items a second and a consumer 20% slower, on an
/// unbounded channel that the agent watches as the queue `jobs`.
fn start_queue(per_s: u64) {
    let jobs = heaptide_agent::queue("jobs", None);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let every = Duration::from_micros(1_000_000 / per_s);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        for i in 0.. {
            tick.tick().await;
            if tx.send(i).is_err() {
                break;
            }
            jobs.acquire();
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every * 5 / 4);
        while rx.recv().await.is_some() {
            jobs.release();
            tick.tick().await;
        }
    });
}
