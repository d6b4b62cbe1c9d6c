//! Resource counts from `/proc` (through `procfs`) and limits (through
//! `nix`). Every reader fails on its own: an unreadable file drops its
//! metrics from the sample, never the sample itself.

use std::collections::{BTreeMap, HashMap, HashSet};

use heaptide_wire::{metric, thread_name_prefix};
use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
use procfs::process::{FDTarget, Process};
use procfs::Current;

pub(crate) type Metrics = BTreeMap<String, f64>;

/// The most thread-name prefixes reported; the rest are summed as `other`,
/// so a service that names threads by request id cannot flood the store.
const MAX_THREAD_PREFIXES: usize = 32;

pub(crate) struct ProcessSampler {
    me: Option<Process>,
    page_size: u64,
    cgroup_dir: Option<std::path::PathBuf>,
}

impl ProcessSampler {
    pub(crate) fn new() -> Self {
        let me = Process::myself().ok();
        let cgroup_dir = me.as_ref().and_then(cgroup_v2_dir);
        ProcessSampler {
            me,
            page_size: procfs::page_size(),
            cgroup_dir,
        }
    }

    /// Reads everything it can into `out`; returns how many readers failed.
    pub(crate) fn sample(&mut self, out: &mut Metrics) -> u32 {
        let Some(me) = &self.me else {
            self.me = Process::myself().ok();
            return 1;
        };
        let mut failures = 0;
        let mut set = |k: &str, v: f64| {
            out.insert(k.to_owned(), v);
        };
        match me.stat() {
            Ok(stat) => {
                set(metric::RSS, (stat.rss * self.page_size) as f64);
                set(metric::VSIZE, stat.vsize as f64);
                set(metric::MINOR_FAULTS, stat.minflt as f64);
                set(metric::MAJOR_FAULTS, stat.majflt as f64);
            }
            Err(_) => failures += 1,
        }
        match me.status() {
            Ok(st) => {
                if let Some(v) = st.voluntary_ctxt_switches {
                    set(metric::VOLUNTARY_CTXT, v as f64);
                }
                if let Some(v) = st.nonvoluntary_ctxt_switches {
                    set(metric::INVOLUNTARY_CTXT, v as f64);
                }
            }
            Err(_) => failures += 1,
        }
        let sockets = match fds(me, out) {
            Some(s) => s,
            None => {
                failures += 1;
                HashSet::new()
            }
        };
        if tcp(me, &sockets, out).is_none() {
            failures += 1;
        }
        if threads(me, out).is_none() {
            failures += 1;
        }
        limits(out);
        if let Some(dir) = &self.cgroup_dir {
            cgroup(dir, out);
        }
        failures
    }
}

/// Counts fds by kind; returns the inodes of the sockets among them.
fn fds(me: &Process, out: &mut Metrics) -> Option<HashSet<u64>> {
    let mut kinds: [(&str, u64); 5] = [
        ("file", 0),
        ("socket", 0),
        ("pipe", 0),
        ("anon", 0),
        ("other", 0),
    ];
    let mut sockets = HashSet::new();
    let mut total = 0u64;
    for fd in me.fd().ok()?.flatten() {
        total += 1;
        let kind = match fd.target {
            FDTarget::Path(_) | FDTarget::MemFD(_) => 0,
            FDTarget::Socket(inode) => {
                sockets.insert(inode);
                1
            }
            FDTarget::Pipe(_) => 2,
            FDTarget::AnonInode(_) => 3,
            _ => 4,
        };
        kinds[kind].1 += 1;
    }
    out.insert(metric::FDS.to_owned(), total as f64);
    for (k, n) in kinds {
        out.insert(format!("{}{k}", metric::FDS_KIND_PREFIX), n as f64);
    }
    Some(sockets)
}

/// Counts the process's own TCP sockets by state, matched by inode.
fn tcp(me: &Process, sockets: &HashSet<u64>, out: &mut Metrics) -> Option<()> {
    let mut by_state: HashMap<&'static str, u64> = HashMap::new();
    let mut ok = false;
    for table in [me.tcp(), me.tcp6()] {
        let Ok(entries) = table else { continue };
        ok = true;
        for e in entries
            .iter()
            .filter(|e| e.inode != 0 && sockets.contains(&e.inode))
        {
            *by_state.entry(tcp_state_name(&e.state)).or_default() += 1;
        }
    }
    if !ok {
        return None;
    }
    let total: u64 = by_state.values().sum();
    out.insert(metric::TCP.to_owned(), total as f64);
    // Always report the states that matter for leaks, so their series
    // have zeros rather than gaps.
    for s in ["established", "close_wait", "listen"] {
        by_state.entry(s).or_default();
    }
    for (state, n) in by_state {
        out.insert(format!("{}{state}", metric::TCP_STATE_PREFIX), n as f64);
    }
    Some(())
}

fn tcp_state_name(s: &procfs::net::TcpState) -> &'static str {
    use procfs::net::TcpState::*;
    match s {
        Established => "established",
        SynSent => "syn_sent",
        SynRecv => "syn_recv",
        FinWait1 => "fin_wait1",
        FinWait2 => "fin_wait2",
        TimeWait => "time_wait",
        Close => "close",
        CloseWait => "close_wait",
        LastAck => "last_ack",
        Listen => "listen",
        Closing => "closing",
        NewSynRecv => "new_syn_recv",
    }
}

fn threads(me: &Process, out: &mut Metrics) -> Option<()> {
    let mut by_prefix: HashMap<String, u64> = HashMap::new();
    let mut total = 0u64;
    for task in me.tasks().ok()?.flatten() {
        total += 1;
        let name = task.stat().map(|s| s.comm).unwrap_or_default();
        *by_prefix.entry(thread_name_prefix(&name)).or_default() += 1;
    }
    out.insert(metric::THREADS.to_owned(), total as f64);
    let mut prefixes: Vec<(String, u64)> = by_prefix.into_iter().collect();
    prefixes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut other = 0;
    for (i, (prefix, n)) in prefixes.into_iter().enumerate() {
        if i < MAX_THREAD_PREFIXES {
            out.insert(format!("{}{prefix}", metric::THREADS_NAME_PREFIX), n as f64);
        } else {
            other += n;
        }
    }
    if other > 0 {
        *out.entry(format!("{}other", metric::THREADS_NAME_PREFIX))
            .or_default() += other as f64;
    }
    Some(())
}

/// Limits are reported as numbers; an unlimited one is left out.
fn limits(out: &mut Metrics) {
    let mut rl = |res, soft_key: &str, hard_key: Option<&str>| {
        if let Ok((soft, hard)) = getrlimit(res) {
            if soft != RLIM_INFINITY {
                out.insert(soft_key.to_owned(), soft as f64);
            }
            if let (Some(k), true) = (hard_key, hard != RLIM_INFINITY) {
                out.insert(k.to_owned(), hard as f64);
            }
        }
    };
    rl(
        Resource::RLIMIT_NOFILE,
        metric::LIMIT_NOFILE_SOFT,
        Some(metric::LIMIT_NOFILE_HARD),
    );
    rl(Resource::RLIMIT_NPROC, metric::LIMIT_NPROC, None);
    rl(Resource::RLIMIT_AS, metric::LIMIT_AS, None);
    if let Ok(n) = procfs::sys::kernel::threads_max() {
        out.insert(metric::LIMIT_THREADS_MAX.to_owned(), f64::from(n));
    }
    if let Ok(m) = procfs::Meminfo::current() {
        out.insert(metric::LIMIT_PHYSICAL_MEMORY.to_owned(), m.mem_total as f64);
    }
}

/// The process's cgroup v2 directory, when cgroup2 is mounted.
fn cgroup_v2_dir(me: &Process) -> Option<std::path::PathBuf> {
    let groups = me.cgroups().ok()?;
    let unified = groups.into_iter().find(|g| g.hierarchy == 0)?;
    let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .find(|r| std::path::Path::new(r).join("cgroup.controllers").exists())?;
    let dir = std::path::Path::new(root).join(unified.pathname.trim_start_matches('/'));
    dir.exists().then_some(dir)
}

/// Reads `memory.max`, `memory.current` and `pids.max`; `max` means no limit
/// and is left out. cgroupfs files are single numbers, which procfs does not
/// cover.
fn cgroup(dir: &std::path::Path, out: &mut Metrics) {
    let read = |f: &str| -> Option<f64> {
        let t = std::fs::read_to_string(dir.join(f)).ok()?;
        t.trim().parse::<u64>().ok().map(|v| v as f64)
    };
    for (file, key) in [
        ("memory.max", metric::LIMIT_MEMORY_MAX),
        ("memory.current", metric::CGROUP_MEMORY_CURRENT),
        ("pids.max", metric::LIMIT_PIDS_MAX),
    ] {
        if let Some(v) = read(file) {
            out.insert(key.to_owned(), v);
        }
    }
}

/// Unix milliseconds at which this process started.
pub(crate) fn start_time_ms() -> i64 {
    let from_proc = || -> Option<i64> {
        let stat = Process::myself().ok()?.stat().ok()?;
        let boot = procfs::boot_time_secs().ok()? as f64;
        let since_boot = stat.starttime as f64 / procfs::ticks_per_second() as f64;
        Some(((boot + since_boot) * 1000.0) as i64)
    };
    from_proc().unwrap_or_else(crate::runtime::now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_own_process() {
        let mut s = ProcessSampler::new();
        let mut m = Metrics::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        assert_eq!(s.sample(&mut m), 0, "{m:?}");
        assert!(m[metric::RSS] > 0.0);
        assert!(m[metric::FDS] >= 3.0);
        assert!(m["fds.pipe"] >= 2.0);
        assert!(m["fds.socket"] >= 1.0);
        assert!(m["tcp.listen"] >= 1.0);
        assert!(m[metric::THREADS] >= 1.0);
        assert!(m.contains_key(metric::LIMIT_NOFILE_SOFT));
        drop((listener, r, w));
    }
}
