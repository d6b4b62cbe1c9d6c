//! A small HTTP service that leaks on purpose, with the heaptide agent
//! linked in. It is the demo of the quickstart and the subject of the
//! end-to-end tests.
//!
//! Routes:
//! - `GET /leak?kb=N`: keeps N KiB (default 64) per request in a global; a heap leak.
//! - `GET /leak-fd`: opens a file and never closes it; an fd leak.
//! - `GET /leak-fd-all`: starts a thread that opens files until none is
//!   left, and takes every descriptor freed after that: a process pinned at
//!   its fd limit.
//! - `GET /cache?key=K`: fills a cache bounded at 2,000 entries of 4 KiB; healthy growth to a plateau.
//! - `GET /warm?kb=N`: keeps N KiB (default 64) per request in a buffer
//!   pool bounded at 128 MiB, the oldest evicted past it: a warm-up that
//!   climbs fast and then holds.
//! - `GET /work`: allocates and frees; no growth.
//! - `GET /intern?n=N`: interns N new strings of about 100 bytes with the
//!   `internment` crate, which keeps them for ever; a leak inside a library.
//! - `GET /spawn-thread`: starts a parked thread named `leaky-worker-N`; a thread leak.
//! - `GET /pause?ms=N`: an application pause reported through the agent.
//! - `/leak-mmap`, `/fragment`, `/spawn-stack-thread`: RSS that grows
//!   outside the heap or by its overhead (`memory.rs`).
//! - `/pool/*`, `/tasks/leak`, `/queue/start`: a connection pool, tasks
//!   and a queue, healthy or leaking (`pools.rs`).
//! - `GET /healthz`
//!
//! It listens on `LEAKY_LISTEN` (default `127.0.0.1:0`) and prints
//! `listening on http://ADDR` once it accepts connections. `LEAKY_AGENT=off`
//! runs it without the agent, for overhead comparisons.

heaptide_agent::global_allocator!();

mod memory;
mod pools;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use axum::extract::Query;
use axum::routing::get;
use axum::Router;

static LEAKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
static LEAKED_FILES: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
static CACHE: Mutex<Option<BoundedCache>> = Mutex::new(None);
static THREADS: AtomicUsize = AtomicUsize::new(0);
static WARM: Mutex<VecDeque<Vec<u8>>> = Mutex::new(VecDeque::new());

const CACHE_ENTRIES: usize = 2_000;
/// The warm-up's bound: what a connection or buffer pool holds once warm.
const WARM_CAP_BYTES: usize = 128 << 20;

#[derive(Default)]
struct BoundedCache {
    map: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
}

#[derive(serde::Deserialize)]
struct Params {
    kb: Option<usize>,
    key: Option<u64>,
    ms: Option<u64>,
    n: Option<usize>,
}

/// The leak: request buffers kept forever in a global.
#[inline(never)]
fn leak_request_buffer(kb: usize) -> usize {
    let buf = std::hint::black_box(vec![0xA5u8; kb * 1024]);
    let mut leaked = LEAKED.lock().unwrap_or_else(|p| p.into_inner());
    leaked.push(buf);
    leaked.len()
}

/// The fd leak: each call opens a file and keeps it.
#[inline(never)]
fn leak_file_handle() -> std::io::Result<usize> {
    let f = std::fs::File::open("/dev/null")?;
    let mut files = LEAKED_FILES.lock().unwrap_or_else(|p| p.into_inner());
    files.push(f);
    Ok(files.len())
}

/// The staircase leak: each call leaks `n` files at once, as a reconnect
/// storm that never closes its sockets would. Called now and then, the fd
/// count climbs in steps.
#[inline(never)]
fn leak_file_burst(n: usize) -> std::io::Result<usize> {
    let mut total = 0;
    for _ in 0..n {
        total = leak_file_handle()?;
    }
    Ok(total)
}

/// Takes every descriptor there is, for ever: what a leak that reached
/// the limit does to the rest of the process.
#[inline(never)]
fn leak_every_file_handle() {
    loop {
        if leak_file_handle().is_err() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Healthy growth: a cache that stops at its bound.
#[inline(never)]
fn fill_bounded_cache(key: u64) -> usize {
    let mut guard = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let cache = guard.get_or_insert_with(BoundedCache::default);
    if !cache.map.contains_key(&key) {
        if cache.map.len() >= CACHE_ENTRIES {
            if let Some(old) = cache.order.pop_front() {
                cache.map.remove(&old);
            }
        }
        cache.map.insert(key, vec![key as u8; 4096]);
        cache.order.push_back(key);
    }
    cache.map.len()
}

/// The warm-up: buffers pooled up to a bound, the oldest recycled past
/// it, so the heap climbs once and then holds.
#[inline(never)]
fn warm_buffer_pool(kb: usize) -> usize {
    let mut pool = WARM.lock().unwrap_or_else(|p| p.into_inner());
    pool.push_back(std::hint::black_box(vec![0x5Au8; kb * 1024]));
    while pool.iter().map(Vec::len).sum::<usize>() > WARM_CAP_BYTES {
        pool.pop_front();
    }
    pool.len()
}

#[inline(never)]
fn transient_work() -> usize {
    let v: Vec<String> = (0..256).map(|i| format!("item-{i}")).collect();
    std::hint::black_box(v).len()
}

/// Request ids interned for cheap comparison: each is new, and the
/// interner never lets one go.
#[inline(never)]
fn intern_request_ids(n: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    (0..n)
        .map(|_| {
            let id = NEXT.fetch_add(1, Ordering::Relaxed);
            // The interner copies the text into storage of its own.
            let s = format!("request-{id:016}-{}", "x".repeat(72));
            internment::Intern::<str>::from(s.as_str()).len()
        })
        .sum()
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leaky-service: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // LEAKY_AGENT=off runs without the agent, for overhead comparisons.
    let agent = if std::env::var("LEAKY_AGENT").as_deref() == Ok("off") {
        None
    } else {
        let agent = heaptide_agent::builder().service("leaky-service").start()?;
        if let Some(reason) = agent.heap_profiling().reason {
            eprintln!("leaky-service: heap profiles are off: {reason}");
        }
        Some(agent)
    };
    let listen = std::env::var("LEAKY_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Scheduling lag of this runtime, as the agent's tokio probe sees it,
    // at the agent's pause tick.
    let tick = agent
        .as_ref()
        .map_or(heaptide_agent::DEFAULT_PAUSE_TICK, |a| {
            a.config().pause_tick
        });
    heaptide_agent::spawn_tokio_probe(rt.handle(), tick);
    rt.block_on(async move {
        pools::start().await?;
        let app = routes().merge(pools::routes()).merge(memory::routes());
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        println!("listening on http://{}", listener.local_addr()?);
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    if let Some(agent) = agent {
        agent.shutdown();
    }
    Ok(())
}

/// The example's routes: each leaks, caches or works in its own way.
fn routes() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/leak",
            get(|Query(p): Query<Params>| async move {
                heaptide_agent::count_requests(1);
                format!(
                    "{}\n",
                    leak_request_buffer(p.kb.unwrap_or(64).min(64 * 1024))
                )
            }),
        )
        .route(
            "/leak-fd",
            get(|| async {
                heaptide_agent::count_requests(1);
                match leak_file_handle() {
                    Ok(n) => format!("{n}\n"),
                    Err(e) => format!("error: {e}\n"),
                }
            }),
        )
        .route(
            "/leak-fd-burst",
            get(|Query(p): Query<Params>| async move {
                heaptide_agent::count_requests(1);
                match leak_file_burst(p.n.unwrap_or(10).min(1000)) {
                    Ok(n) => format!("{n}\n"),
                    Err(e) => format!("error: {e}\n"),
                }
            }),
        )
        .route(
            "/leak-fd-all",
            get(|| async {
                heaptide_agent::count_requests(1);
                std::thread::spawn(leak_every_file_handle);
                "leaking every descriptor\n"
            }),
        )
        .route(
            "/cache",
            get(|Query(p): Query<Params>| async move {
                heaptide_agent::count_requests(1);
                format!("{}\n", fill_bounded_cache(p.key.unwrap_or(0)))
            }),
        )
        .route(
            "/intern",
            get(|Query(p): Query<Params>| async move {
                heaptide_agent::count_requests(1);
                format!("{}\n", intern_request_ids(p.n.unwrap_or(10).min(10_000)))
            }),
        )
        .route(
            "/warm",
            get(|Query(p): Query<Params>| async move {
                heaptide_agent::count_requests(1);
                format!("{}\n", warm_buffer_pool(p.kb.unwrap_or(64).min(4096)))
            }),
        )
        .route(
            "/work",
            get(|| async {
                heaptide_agent::count_requests(1);
                format!("{}\n", transient_work())
            }),
        )
        .merge(thread_and_pause_routes())
}

/// The thread leak and the application pause.
fn thread_and_pause_routes() -> Router {
    Router::new()
        .route(
            "/spawn-thread",
            get(|| async {
                let n = THREADS.fetch_add(1, Ordering::Relaxed);
                let spawned = std::thread::Builder::new()
                    .name(format!("leaky-worker-{n}"))
                    .spawn(|| loop {
                        std::thread::park();
                    });
                match spawned {
                    Ok(_) => format!("{}\n", n + 1),
                    Err(e) => format!("error: {e}\n"),
                }
            }),
        )
        .route(
            "/pause",
            get(|Query(p): Query<Params>| async move {
                let ms = p.ms.unwrap_or(50).min(10_000);
                tokio::task::spawn_blocking(move || {
                    let _pause = heaptide_agent::pause("leaky-compaction");
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                })
                .await
                .map(|_| "paused\n")
                .unwrap_or("error\n")
            }),
        )
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
