//! Real processes for tests: workspace binaries started on loopback, killed
//! when dropped, and small HTTP helpers.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary built by this `cargo test` run.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps/, binaries from target/<profile>/.
    let mut dir = exe.parent().expect("target directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target directory");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// A child process that is killed when dropped.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    /// `http`, or `https` for a server that announced it.
    pub scheme: &'static str,
    stderr_path: PathBuf,
    /// The token reads send, for an analyzer started with one.
    pub token: Option<String>,
}

impl Proc {
    /// Starts `cmd`, whose first stdout line announces `... http://ADDR ...`.
    pub fn start(mut cmd: Command, stderr_path: PathBuf) -> Proc {
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("{cmd:?} did not announce its address; stderr:\n{err}");
            }
        };
        let scheme = if line.contains("https://") {
            "https"
        } else {
            "http"
        };
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Proc {
            child,
            addr,
            scheme,
            stderr_path,
            token: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// GETs `path`, with the bearer token if there is one.
    pub fn get(&self, path: &str) -> (u16, String) {
        let mut req = http().get(self.url(path));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        match req.call() {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => (0, e.to_string()),
        }
    }

    /// GETs `path` as JSON, which must answer 200.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGKILL, and wait for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `analyzer serve` on `listen` with the store at `store`; reads
/// through [`Proc::get`] carry the read (or admin) token if `extra` names
/// its file. Every agent a test plays connects from the same loopback
/// address, which the per-agent rate limit and the per-address limits
/// would count as one: unless `extra` sets its own, the batch rate is
/// raised to 1,000 a second, and the request rate and requests in flight
/// per address to the server's whole.
pub fn analyzer(dir: &Path, store: &Path, listen: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(bin("analyzer"));
    cmd.arg("serve")
        .arg("--listen")
        .arg(listen)
        .arg("--store")
        .arg(store)
        .args(extra);
    if !extra.contains(&"--rate-limit") {
        cmd.args(["--rate-limit", "1000"]);
    }
    if !extra.contains(&"--request-rate-per-address") {
        cmd.args(["--request-rate-per-address", "1000000"]);
    }
    if !extra.contains(&"--max-requests-per-address") {
        cmd.args(["--max-requests-per-address", "100000"]);
    }
    // Reads carry the read token, else the admin token: the ingest token
    // (`--token-file`) reads nothing.
    let token = ["--read-token-file", "--admin-token-file"]
        .iter()
        .find_map(|flag| {
            let i = extra.iter().position(|a| a == flag)?;
            std::fs::read_to_string(extra.get(i + 1)?).ok()
        })
        .map(|t| t.trim().to_owned());
    cmd.env_remove("HEAPTIDE_TOKEN").env("RUST_LOG", "warn");
    let mut p = Proc::start(cmd, dir.join(format!("analyzer-{}.log", unique())));
    p.token = token;
    p
}

/// Starts the leaky example, streaming to `endpoint` with fast intervals.
pub fn leaky(dir: &Path, endpoint: &str, instance: &str, env: &[(&str, &str)]) -> Proc {
    leaky_from(&bin("leaky-service"), dir, endpoint, instance, env)
}

/// [`leaky`], run from the executable at `exe` (a stripped copy, say).
pub fn leaky_from(
    exe: &Path,
    dir: &Path,
    endpoint: &str,
    instance: &str,
    env: &[(&str, &str)],
) -> Proc {
    let mut cmd = Command::new(exe);
    cmd.env("HEAPTIDE_ENDPOINT", endpoint)
        .env("HEAPTIDE_INSTANCE", instance)
        .env("HEAPTIDE_INTERVAL", "200ms")
        .env("HEAPTIDE_PROFILE_INTERVAL", "500ms")
        .env("LEAKY_LISTEN", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::start(cmd, dir.join(format!("leaky-{instance}-{}.log", unique())))
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// GETs `url` and parses JSON, panicking with the body on a non-200.
pub fn get_json(url: &str) -> serde_json::Value {
    let mut resp = http()
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

/// GETs `url`, returning the status and body.
/// Posts `batch` as JSON to an ingest `url`, as an agent would, and
/// asserts that it was accepted.
pub fn post_batch(url: &str, batch: &heaptide_wire::Batch) {
    let r = http()
        .post(url)
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(batch).expect("a batch serializes"))
        .expect("the analyzer answers");
    assert_eq!(r.status().as_u16(), 200, "batch refused");
}

/// An HTTP client that shows redirects rather than following them, and
/// returns error statuses as responses.
pub fn no_redirects() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// A response header as text, empty when absent.
pub fn header(r: &ureq::http::Response<ureq::Body>, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

pub fn get(url: &str) -> (u16, String) {
    match http().get(url).call() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_for_or(what, limit, String::new, f)
}

/// Like [`wait_for`], adding `context()` to the failure message.
pub fn wait_for_or<T>(
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= limit {
            panic!(
                "timed out after {limit:?} waiting for {what}; {}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An address on loopback below the ephemeral range, where no `bind(0)`
/// of a concurrent test can land, with nothing listening.
pub fn unused_fixed_addr() -> SocketAddr {
    let start = 20_000 + (std::process::id() % 5_000) as u16;
    for port in (start..30_000).chain(20_000..start) {
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().expect("addr");
        }
    }
    panic!("no free port below the ephemeral range")
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The latest value of `metric` for `instance`, if any.
pub fn latest(an: &Proc, service: &str, instance: &str, metric: &str) -> Option<f64> {
    let v = an.get_json(&format!(
        "/v1/series?service={service}&instance={instance}&metric={metric}&since=10m"
    ));
    v["points"].as_array()?.last()?["value"].as_f64()
}

/// Resident memory of process `pid` in MiB: now (`VmRSS`) and at its peak
/// (`VmHWM`); zero when it cannot be read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resident {
    pub now_mib: f64,
    pub peak_mib: f64,
}

pub fn resident(pid: u32) -> Resident {
    let Ok(st) = procfs::process::Process::new(pid as i32).and_then(|p| p.status()) else {
        return Resident::default();
    };
    let mib = |kib: Option<u64>| kib.unwrap_or(0) as f64 / 1024.0;
    Resident {
        now_mib: mib(st.vmrss),
        peak_mib: mib(st.vmhwm),
    }
}
