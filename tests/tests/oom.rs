//! A process under a real cgroup memory limit, OOM-killed by the kernel
//! twice: each death is recorded as its process's end, with the heap
//! profile its agent took under memory pressure before it, and shown by
//! `analyzer leaks` and the instance page.
//!
//! The test needs a memory cgroup it may create a child in (cgroup v2
//! with the memory controller, or v1's memory hierarchy) and root; without
//! one it says which is missing and checks nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use heaptide_tests::*;

const LIMIT: u64 = 192 << 20;

/// A child memory cgroup of this process's own, limited to [`LIMIT`],
/// and the file its processes are added through; or why there is none.
fn memory_cgroup() -> Result<PathBuf, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let name = format!("heaptide-oom-{}", std::process::id());
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let path = path.trim_start_matches('/');
        let dir = if controllers.split(',').any(|c| c == "memory") {
            Path::new("/sys/fs/cgroup/memory").join(path).join(&name)
        } else if controllers.is_empty() {
            let d = Path::new("/sys/fs/cgroup").join(path);
            let enabled =
                std::fs::read_to_string(d.join("cgroup.subtree_control")).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "memory") {
                continue;
            }
            d.join(&name)
        } else {
            continue;
        };
        if std::fs::create_dir(&dir).is_err() {
            continue;
        }
        let limit_file = ["memory.max", "memory.limit_in_bytes"]
            .into_iter()
            .find(|f| dir.join(f).exists());
        if let Some(f) = limit_file {
            if std::fs::write(dir.join(f), LIMIT.to_string()).is_ok() {
                // No swap to escape into, where the kernel counts it.
                for swap in ["memory.swap.max", "memory.memsw.limit_in_bytes"] {
                    let _ = std::fs::write(
                        dir.join(swap),
                        if swap.ends_with("max") {
                            "0".into()
                        } else {
                            LIMIT.to_string()
                        },
                    );
                }
                return Ok(dir);
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
    Err("no memory cgroup this test may create a child in (cgroup v2 with the memory controller enabled for its children, or cgroup v1's memory hierarchy, as root)".into())
}

/// The leaky example, started inside `cgroup`.
fn leaky_in(cgroup: &Path, dir: &Path, endpoint: &str) -> Proc {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec {}",
            cgroup.display(),
            bin("leaky-service").display()
        ))
        .env("HEAPTIDE_ENDPOINT", endpoint)
        .env("HEAPTIDE_INSTANCE", "oom-1")
        .env("HEAPTIDE_INTERVAL", "200ms")
        .env("HEAPTIDE_PROFILE_INTERVAL", "1h")
        .env("HEAPTIDE_HEAP_SAMPLE_PERIOD", "256KiB")
        .env("LEAKY_LISTEN", "127.0.0.1:0");
    Proc::start(
        cmd,
        dir.join(format!("leaky-{}.log", Instant::now().elapsed().as_nanos())),
    )
}

/// Leaks 1 MiB every 50 ms until the kernel kills the process; returns
/// the signal that ended it.
fn leak_until_killed(leaky: &mut Proc) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        if let Some(status) = leaky.child.try_wait().unwrap() {
            return status.signal();
        }
        let _ = get(&leaky.url("/leak?kb=1024"));
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The test's cgroup, removed when the test ends, pass or fail: declared
/// before the processes in it, so that it is dropped after they are
/// killed and the group is empty.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

impl std::ops::Deref for Removed {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

#[test]
fn each_oom_kill_is_recorded_with_the_profile_taken_under_pressure() {
    let cgroup = match memory_cgroup() {
        Ok(c) => Removed(c),
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let an = analyzer(
        dir.path(),
        &store,
        "127.0.0.1:0",
        &["--evaluate-every", "2s"],
    );
    let endpoint = format!("http://{}", an.addr);
    for _ in 0..2 {
        let mut leaky = leaky_in(&cgroup, dir.path(), &endpoint);
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            leak_until_killed(&mut leaky),
            Some(9),
            "killed by the kernel"
        );
    }
    // The next process of the instance reads the cgroup's OOM kills.
    let _last = leaky_in(&cgroup, dir.path(), &endpoint);
    std::thread::sleep(Duration::from_secs(6));
    let v = leaks_json(&store);
    let deaths = v["deaths"]
        .as_array()
        .unwrap_or_else(|| panic!("no deaths: {v:#}"));
    assert_eq!(deaths.len(), 2, "every OOM kill recorded: {v:#}");
    for d in deaths {
        assert_eq!(d["cause"], "oom_killed", "{d:#}");
        assert!(
            d["summary"]
                .as_str()
                .unwrap()
                .starts_with("died: OOM-killed at"),
            "{d:#}"
        );
        assert!(
            d["pressure_profile_ms"].is_i64(),
            "a pressure profile before the kill: {d:#}"
        );
    }
    let (status, page) = an.get("/ui/instance?service=leaky-service&instance=oom-1&since=10m");
    assert_eq!(status, 200);
    assert!(page.contains("died: OOM-killed"), "{page}");
    assert!(page.contains("class=\"pressure-profile\""), "{page}");
    // A profile was taken at the pressure mark, before the kill: the
    // periodic ones come at 10 s, 30 s and then hourly.
    let profiles = get_json(&an.url("/v1/profiles?service=leaky-service&instance=oom-1&since=10m"));
    for d in deaths {
        let (mark, end) = (
            d["pressure_profile_ms"].as_i64().unwrap(),
            d["last_seen_ms"].as_i64().unwrap(),
        );
        let taken = profiles["profiles"].as_array().unwrap().iter().any(|p| {
            let ts = p["ts_ms"].as_i64().unwrap();
            (mark..=mark + 3_000).contains(&ts) && ts <= end
        });
        assert!(
            taken,
            "a profile within 3 s of the mark at {mark}, before {end}: {profiles:#}"
        );
    }
    let at = deaths[0]["pressure_profile_ms"].as_i64().unwrap();
    let (status, flame) = an.get(&format!(
        "/ui/flame.svg?service=leaky-service&instance=oom-1&at={at}"
    ));
    assert_eq!(status, 200);
    assert!(
        flame.contains("leak_request_buffer"),
        "the leak, in the pressure profile"
    );
}
