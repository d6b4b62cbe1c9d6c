//! A real ClickHouse server for tests: Debian's `clickhouse-server`
//! started as the test's own process, on loopback ports, with a private
//! data path and users file. `./test.sh` installs it when missing.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The password of the `heaptide` user every test server has (the
/// `default` user has none).
pub const PASSWORD: &str = "heaptide-test-password";

/// Runs the server (`$0 "$@"`) and kills the process group once the test
/// process (`HEAPTIDE_TEST_PID`) is gone.
const WATCHDOG: &str = r#""$0" "$@" &
server=$!
while kill -0 "$HEAPTIDE_TEST_PID" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 1; done
kill -KILL 0"#;

/// One server: killed when dropped, and when the test process exits.
pub struct ClickHouse {
    child: Option<Child>,
    dir: PathBuf,
    pub http_port: u16,
    tcp_port: u16,
}

fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HEAPTIDE_CLICKHOUSE_SERVER") {
        return p.into();
    }
    for p in ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("clickhouse-server is not installed: run ./test.sh, which installs Debian's clickhouse-server, or set HEAPTIDE_CLICKHOUSE_SERVER")
}

/// A free port below the ephemeral range (32768 up), where no `bind(0)`
/// of a concurrent test can take it between this check and the server's
/// own bind; each call of a process tries the next.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 30_000 + (std::process::id() % 1_000) as u16 * 2;
    for _ in 0..2_000 {
        let port = 30_000 + (base - 30_000 + NEXT.fetch_add(1, Ordering::Relaxed)) % 2_700;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 30000 and 32700")
}

/// Every server of this test run lives under the target directory; the
/// directories of earlier runs are removed first.
fn base_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let target = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let base = target.join("clickhouse-tests");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let pid: Option<i32> = e
                .file_name()
                .to_str()
                .and_then(|n| n.split('-').next()?.parse().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    base
}

impl ClickHouse {
    /// Starts a server of its own, for tests that stop and restart it.
    pub fn start() -> ClickHouse {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = base_dir().join(name);
        std::fs::create_dir_all(&dir).expect("server directory");
        let mut ch = ClickHouse {
            child: None,
            dir,
            http_port: free_port(),
            tcp_port: free_port(),
        };
        ch.write_config();
        ch.resume();
        ch
    }

    /// The server shared by every test of this process: each test uses
    /// a database of its own ([`Self::url`] with a unique name).
    pub fn shared() -> &'static ClickHouse {
        static SHARED: OnceLock<ClickHouse> = OnceLock::new();
        SHARED.get_or_init(ClickHouse::start)
    }

    /// A store URL for `database` as the `default` user.
    pub fn url(&self, database: &str) -> String {
        format!("clickhouse://127.0.0.1:{}/{database}", self.http_port)
    }

    /// A store URL for `database` as `user` with `password`.
    pub fn url_as(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "clickhouse://{user}:{password}@127.0.0.1:{}/{database}",
            self.http_port
        )
    }

    fn write_config(&self) {
        let d = self.dir.display();
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{}</http_port>
  <tcp_port>{}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>200</max_concurrent_queries>
</yandex>
"#,
            self.http_port, self.tcp_port
        );
        let user = |name: &str, password: &str| {
            format!("<{name}><password>{password}</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></{name}>")
        };
        let users = format!(
            "<?xml version=\"1.0\"?>\n<yandex><profiles><default></default></profiles><users>{}{}</users><quotas><default></default></quotas></yandex>\n",
            user("default", ""),
            user("heaptide", PASSWORD)
        );
        std::fs::write(self.dir.join("config.xml"), config).expect("config.xml");
        std::fs::write(self.dir.join("users.xml"), users).expect("users.xml");
    }

    /// Starts the server (again) on the same ports and data, and waits
    /// until it answers.
    pub fn resume(&mut self) {
        let mut cmd = Command::new("sh");
        // A watchdog in the server's own process group: when the test
        // process is gone (a static is never dropped), it kills the group.
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg(server_binary())
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .env("HEAPTIDE_TEST_PID", std::process::id().to_string())
            .current_dir(&self.dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("spawning clickhouse-server"));
        let ping = format!("http://127.0.0.1:{}/ping", self.http_port);
        let agent = crate::http();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(mut r) = agent.get(&ping).call() {
                if r.body_mut()
                    .read_to_string()
                    .unwrap_or_default()
                    .starts_with("Ok")
                {
                    return;
                }
            }
            let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
            if log.contains("Application: ") || log.contains("<Error> Application") {
                self.stop();
                panic!("clickhouse-server failed to start:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("clickhouse-server did not answer {ping} within 60 s");
    }

    /// The server's process id (a child of its watchdog), for measuring it.
    pub fn server_pid(&self) -> Option<u32> {
        let sh = self.child.as_ref()?.id();
        let children = std::fs::read_to_string(format!("/proc/{sh}/task/{sh}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// Kills the server, as a crash or a lost network would.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let group = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = c.wait();
            // The server itself is not this process's child: wait until
            // its port is free, so that a restart can take it.
            let addr = format!("127.0.0.1:{}", self.http_port);
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(&addr).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Runs `sql` as `default` and returns the answer's text.
    pub fn query(&self, sql: &str) -> String {
        let url = format!("http://127.0.0.1:{}/", self.http_port);
        match crate::http().post(&url).send(sql) {
            Ok(mut r) => r.body_mut().read_to_string().unwrap_or_default(),
            Err(e) => panic!("query {sql:?}: {e}"),
        }
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A database name no other test of this run uses.
pub fn database(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Schema 2's rollups, as that version made them in `db`: one table for
/// both tiers, counting distinct sample times, and a view per tier named
/// as the tiers' tables are now. For the upgrade's test and the views'
/// benchmark.
pub fn schema_2_rollups(db: &str) -> Vec<String> {
    let mut out = vec![format!(
        "CREATE TABLE {db}.rollups (segment Int64, metric String, res UInt32, bucket Int64,
            vmin AggregateFunction(min, Float64), vmax AggregateFunction(max, Float64),
            n AggregateFunction(uniqExact, Int64), first_ms AggregateFunction(min, Int64),
            last_ms AggregateFunction(max, Int64))
         ENGINE = AggregatingMergeTree PARTITION BY (toDate(intDiv(bucket, 1000)), res)
         ORDER BY (segment, metric, res, bucket)"
    )];
    for r in [60_000, 900_000] {
        out.push(format!(
            "CREATE MATERIALIZED VIEW {db}.rollups_{r} TO {db}.rollups AS
             SELECT segment, metric, toUInt32({r}) AS res, intDiv(ts_ms, {r}) * {r} AS bucket,
                minState(value) AS vmin, maxState(value) AS vmax, uniqExactState(ts_ms) AS n,
                minState(ts_ms) AS first_ms, maxState(ts_ms) AS last_ms
             FROM (SELECT segment, metric, ts_ms, value FROM {db}.samples WHERE res = 0)
             GROUP BY segment, metric, bucket"
        ));
    }
    out
}
