//! `analyzer demo`: the quickstart in one command. It serves a temporary
//! store, starts the leaky example with the agent streaming to it, drives
//! load at it, prints the dashboard's address, and prints what `analyzer
//! leaks` finds once it has found the leaking function.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

pub struct DemoOptions {
    /// Where `leaky-service` and `leaky-load` are; built when absent.
    pub bin_dir: PathBuf,
    /// Stop once the leak is reported, rather than serving until Ctrl-C.
    pub exit_when_found: bool,
    /// Give up after this long.
    pub timeout: Duration,
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Result<Killed> {
    Ok(Killed(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()?,
    ))
}

fn first_line_address(child: &mut Child) -> Result<String> {
    let out = child
        .stdout
        .take()
        .ok_or_else(|| Error::invalid("demo", "no stdout"))?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    line.split("http://")
        .nth(1)
        .map(|s| s.trim().to_owned())
        .ok_or_else(|| Error::invalid("demo", format!("the example did not start: {line:?}")))
}

/// Builds the example next to this executable when it is not there yet.
pub(crate) fn ensure_example(bin_dir: &Path) -> Result<()> {
    if bin_dir.join("leaky-service").exists() && bin_dir.join("leaky-load").exists() {
        return Ok(());
    }
    eprintln!("demo: building examples/leaky-service ...");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release = bin_dir.ends_with("release");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-j2", "-p", "leaky-service"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(Error::invalid(
            "demo",
            "building examples/leaky-service failed",
        ));
    }
    Ok(())
}

/// Runs the demo. Returns once the leak is reported (with
/// `exit_when_found`), or when `shutdown` resolves.
pub async fn run(
    opts: DemoOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    ensure_example(&opts.bin_dir)?;
    let dir = std::env::temp_dir().join(format!("heaptide-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store_path = dir.join("demo.db");
    let store: Arc<dyn crate::store::Store> =
        Arc::new(crate::store::SqliteStore::open(&store_path)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(crate::server::AppState::new(
        store.clone(),
        Default::default(),
    ));
    // The same server `serve` runs, retention included.
    let background = crate::server::Background::new(
        crate::store::RetentionPolicy::with_retention(7 * 24 * 3_600_000),
        Duration::from_secs(5),
    );
    let server = tokio::spawn(crate::server::run(
        listener,
        state,
        background,
        std::future::pending(),
    ));
    let (leaky, _load, leaky_addr) = start_example(&opts, addr)?;
    println!("heaptide demo");
    println!("  dashboard:  http://{addr}/");
    println!("  store:      {}", store_path.display());
    println!("  service:    leaky-service (http://{leaky_addr}) under load, with a heap leak and an fd leak");
    println!("  waiting for the leak detector (about a minute) ...");
    let Some(found) = wait_for_leak(store, opts.timeout).await? else {
        return Err(Error::invalid(
            "demo",
            "no leak was found in time; is the machine overloaded?",
        ));
    };
    println!(
        "\n$ analyzer leaks --since 10m --store {}\n",
        store_path.display()
    );
    print!("{}", crate::read::report::leaks_table(&found.leaks(), &[]));
    if !opts.exit_when_found {
        println!("\nThe dashboard stays up at http://{addr}/ until Ctrl-C.");
        shutdown.await;
    }
    server.abort();
    drop(leaky);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Starts the leaky example, sending to `addr`, and its load generator;
/// returns both and the example's own address.
fn start_example(
    opts: &DemoOptions,
    addr: std::net::SocketAddr,
) -> Result<(Killed, Killed, String)> {
    let mut leaky = spawn(
        Command::new(opts.bin_dir.join("leaky-service"))
            .env("HEAPTIDE_ENDPOINT", format!("http://{addr}"))
            .env("HEAPTIDE_SERVICE", "leaky-service")
            .env("HEAPTIDE_INSTANCE", "demo-1")
            .env("HEAPTIDE_INTERVAL", "1s")
            .env("HEAPTIDE_PROFILE_INTERVAL", "5s")
            .env("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB")
            .env("HEAPTIDE_SYMBOL_LINES", "true")
            .env("LEAKY_LISTEN", "127.0.0.1:0"),
    )?;
    let leaky_addr = first_line_address(&mut leaky.0)?;
    let load = spawn(Command::new(opts.bin_dir.join("leaky-load")).args([
        &format!("http://{leaky_addr}"),
        &opts.timeout.as_secs().to_string(),
        "/work",
        "/cache",
        "/leak?kb=16",
        "/work",
        "/leak-fd",
        // A connection pool in use, and tasks that never finish.
        "/pool/query?ms=5",
        "/tasks/leak",
    ]))?;
    Ok((leaky, load, leaky_addr))
}

/// Runs the engine every 5 s until it names `leak_request_buffer` as the
/// heap leak's site, or `timeout` passes.
async fn wait_for_leak(
    store: Arc<dyn crate::store::Store>,
    timeout: Duration,
) -> Result<Option<crate::detect::Analysis>> {
    let started = Instant::now();
    while started.elapsed() <= timeout {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let s = store.clone();
        let now = crate::select::now_ms();
        let analysis = tokio::task::spawn_blocking(move || {
            let sel = crate::select::Selector::all(now - 600_000, now);
            crate::detect::analyze(&*s, &sel, &crate::detect::Options::default())
        })
        .await
        .map_err(|_| Error::invalid("demo", "analysis failed"))??;
        let named = analysis.findings.iter().any(|f| {
            f.resource == crate::detect::Resource::Heap
                && f.verdict == crate::detect::LeakVerdict::Leak
                && f.sites
                    .iter()
                    .any(|s| s.frames.iter().any(|fr| fr.contains("leak_request_buffer")))
        });
        if named {
            return Ok(Some(analysis));
        }
    }
    Ok(None)
}
