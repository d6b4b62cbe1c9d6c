//! Resource counts from `/proc` (parsed by `procfs`, from files kept open
//! since the start, so that sampling goes on at the fd limit) and limits
//! (through `nix`). Every reader fails on its own: an unreadable file drops
//! its metrics from the sample, never the sample itself.

use std::collections::{BTreeMap, HashMap, HashSet};

use heaptide_wire::{metric, thread_name_prefix};
use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
use procfs::process::{FDTarget, Process, Stat, Status};
use std::io::Read;

use crate::kept::{KeptDir, KeptFile};

pub(crate) type Metrics = BTreeMap<String, f64>;

/// The most thread-name prefixes reported; the rest are summed as `other`,
/// so a service that names threads by request id cannot flood the store.
const MAX_THREAD_PREFIXES: usize = 32;

/// The files every sample reads, held open from the start ([`crate::kept`]).
struct Files {
    stat: Option<KeptFile>,
    status: Option<KeptFile>,
    tcp: [Option<KeptFile>; 2],
    fd_dir: Option<KeptDir>,
    task_dir: Option<KeptDir>,
    meminfo: Option<KeptFile>,
    threads_max: Option<KeptFile>,
    cgroup: crate::cgroup::Cgroup,
}

impl Files {
    fn open() -> Files {
        Files {
            stat: KeptFile::open("/proc/self/stat"),
            status: KeptFile::open("/proc/self/status"),
            tcp: [
                KeptFile::open("/proc/self/net/tcp"),
                KeptFile::open("/proc/self/net/tcp6"),
            ],
            fd_dir: KeptDir::open("/proc/self/fd"),
            task_dir: KeptDir::open("/proc/self/task"),
            meminfo: KeptFile::open("/proc/meminfo"),
            threads_max: KeptFile::open("/proc/sys/kernel/threads-max"),
            cgroup: crate::cgroup::Cgroup::open(),
        }
    }
}

pub(crate) struct ProcessSampler {
    files: Files,
    page_size: u64,
    buf: Vec<u8>,
    rss_parts: crate::rss_parts::RssParts,
    targets: crate::targets::Sent,
}

impl ProcessSampler {
    pub(crate) fn new() -> Self {
        ProcessSampler {
            files: Files::open(),
            page_size: procfs::page_size(),
            buf: Vec::new(),
            rss_parts: crate::rss_parts::RssParts::new(),
            targets: crate::targets::Sent::default(),
        }
    }

    /// Reads everything it can into `out`, which already holds jemalloc's
    /// stats (RSS's parts need them); returns how many readers failed.
    pub(crate) fn sample(&mut self, out: &mut Metrics) -> u32 {
        let f = &mut self.files;
        let buf = &mut self.buf;
        let mut failures = 0;
        match parse::<Stat>(f.stat.as_ref(), buf) {
            Some(stat) => {
                out.insert(metric::RSS.into(), (stat.rss * self.page_size) as f64);
                out.insert(metric::VSIZE.into(), stat.vsize as f64);
                out.insert(metric::MINOR_FAULTS.into(), stat.minflt as f64);
                out.insert(metric::MAJOR_FAULTS.into(), stat.majflt as f64);
            }
            None => failures += 1,
        }
        match parse::<Status>(f.status.as_ref(), buf) {
            Some(st) => {
                if let Some(v) = st.voluntary_ctxt_switches {
                    out.insert(metric::VOLUNTARY_CTXT.into(), v as f64);
                }
                if let Some(v) = st.nonvoluntary_ctxt_switches {
                    out.insert(metric::INVOLUNTARY_CTXT.into(), v as f64);
                }
            }
            None => failures += 1,
        }
        let (sockets, mut targets) = fds(f.fd_dir.as_mut(), out).unwrap_or_else(|| {
            failures += 1;
            Default::default()
        });
        let peers = tcp(&f.tcp, &sockets, out).unwrap_or_else(|| {
            failures += 1;
            HashMap::new()
        });
        // A socket fd's target is its TCP peer, when it has one.
        let mut by_peer: HashMap<String, u64> = HashMap::new();
        for inode in &sockets {
            let target = match peers.get(inode) {
                Some(peer) => {
                    *by_peer.entry(peer.clone()).or_default() += 1;
                    format!("tcp:{peer}")
                }
                None => "socket".to_owned(),
            };
            *targets.entry(target).or_default() += 1;
        }
        self.targets.put(out, metric::FDS_TARGET_PREFIX, targets);
        self.targets.put(out, metric::TCP_PEER_PREFIX, by_peer);
        if threads(f.task_dir.as_mut(), out).is_none() {
            failures += 1;
        }
        limits(f, buf, out);
        f.cgroup.sample(buf, out);
        self.rss_parts.sample(std::time::Instant::now(), out);
        failures
    }
}

/// A kept file parsed with `procfs`'s parser for it.
fn parse<T: procfs::FromRead>(file: Option<&KeptFile>, buf: &mut Vec<u8>) -> Option<T> {
    T::from_read(file?.read(buf).ok()?).ok()
}

/// A kept file that holds one number; `max` (no limit) is `None`.
fn number(file: &KeptFile, buf: &mut Vec<u8>) -> Option<f64> {
    let text = std::str::from_utf8(file.read(buf).ok()?).ok()?;
    text.trim().parse::<u64>().ok().map(|v| v as f64)
}

/// Counts fds by kind; returns the inodes of the sockets among them, and
/// the other fds by target.
fn fds(dir: Option<&mut KeptDir>, out: &mut Metrics) -> Option<(HashSet<u64>, Targets)> {
    let dir = dir?;
    let mut kinds: [(&str, u64); 5] = [
        ("file", 0),
        ("socket", 0),
        ("pipe", 0),
        ("anon", 0),
        ("other", 0),
    ];
    let mut sockets = HashSet::new();
    let mut targets = Targets::new();
    let mut total = 0u64;
    for name in dir.names().ok()? {
        // A descriptor closed between the listing and the link is gone.
        let Ok(link) = dir.read_link(&name) else {
            continue;
        };
        total += 1;
        let parsed = link.to_str().and_then(|l| l.parse::<FDTarget>().ok());
        if let Some(t) = parsed.as_ref().and_then(crate::targets::fd_target) {
            *targets.entry(t).or_default() += 1;
        }
        let kind = match parsed {
            Some(FDTarget::Path(_) | FDTarget::MemFD(_)) => 0,
            Some(FDTarget::Socket(inode)) => {
                sockets.insert(inode);
                1
            }
            Some(FDTarget::Pipe(_)) => 2,
            Some(FDTarget::AnonInode(_)) => 3,
            _ => 4,
        };
        kinds[kind].1 += 1;
    }
    out.insert(metric::FDS.to_owned(), total as f64);
    for (k, n) in kinds {
        out.insert(format!("{}{k}", metric::FDS_KIND_PREFIX), n as f64);
    }
    Some((sockets, targets))
}

type Targets = HashMap<String, u64>;

/// Counts the process's own TCP sockets by state, matched by inode;
/// returns each one's peer, when it has one.
fn tcp(
    tables: &[Option<KeptFile>; 2],
    sockets: &HashSet<u64>,
    out: &mut Metrics,
) -> Option<HashMap<u64, String>> {
    let mut by_state: HashMap<&'static str, u64> = HashMap::new();
    let mut own = Vec::new();
    let mut ok = false;
    for table in tables.iter().flatten() {
        let read = table.for_each_line(|line| {
            if let Some(s) = own_socket(line, sockets) {
                *by_state.entry(tcp_state_name(&s.state)).or_default() += 1;
                own.push(s);
            }
        });
        ok |= read.is_ok();
    }
    if !ok {
        return None;
    }
    let listening: HashSet<u16> = own
        .iter()
        .filter(|s| s.state == procfs::net::TcpState::Listen)
        .map(|s| s.local_port)
        .collect();
    let peers = own
        .iter()
        .filter_map(|s| {
            let accepted = listening.contains(&s.local_port);
            Some((s.inode, crate::targets::peer(s.peer.as_ref()?, accepted)))
        })
        .collect();
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
    Some(peers)
}

/// One of the process's own TCP sockets.
#[derive(Debug, PartialEq)]
struct OwnSocket {
    inode: u64,
    state: procfs::net::TcpState,
    local_port: u16,
    peer: Option<(String, u16)>,
}

/// The socket on one line of `/proc/net/tcp{,6}` when its inode is one of
/// `sockets`. Only the fields needed are read, line by line, rather than
/// `procfs`'s `TcpNetEntries`, which builds every entry of the namespace
/// (thousands on a busy host) into one vector per sample.
fn own_socket(line: &[u8], sockets: &HashSet<u64>) -> Option<OwnSocket> {
    let line = std::str::from_utf8(line).ok()?;
    let mut fields = line.split_ascii_whitespace();
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    let local = fields.nth(1)?;
    let rem = fields.next()?;
    let state = fields.next()?;
    let inode: u64 = fields.nth(5)?.parse().ok()?;
    if inode == 0 || !sockets.contains(&inode) {
        return None;
    }
    Some(OwnSocket {
        inode,
        state: procfs::net::TcpState::from_u8(u8::from_str_radix(state, 16).ok()?)?,
        local_port: u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?,
        peer: crate::targets::address(rem),
    })
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

/// Counts threads by name prefix. A name needs a descriptor of its own;
/// at the fd limit the thread is counted, under `other`.
fn threads(dir: Option<&mut KeptDir>, out: &mut Metrics) -> Option<()> {
    let dir = dir?;
    let mut by_prefix: HashMap<String, u64> = HashMap::new();
    let mut total = 0u64;
    let mut comm = String::new();
    for tid in dir.names().ok()? {
        total += 1;
        comm.clear();
        let named = tid.to_str().is_some_and(|t| {
            dir.open_file(&format!("{t}/comm"))
                .and_then(|mut f| f.read_to_string(&mut comm))
                .is_ok()
        });
        let prefix = if named {
            thread_name_prefix(comm.trim_end())
        } else {
            "other".to_owned()
        };
        *by_prefix.entry(prefix).or_default() += 1;
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
fn limits(f: &Files, buf: &mut Vec<u8>, out: &mut Metrics) {
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
    if let Some(n) = f.threads_max.as_ref().and_then(|k| number(k, buf)) {
        out.insert(metric::LIMIT_THREADS_MAX.to_owned(), n);
    }
    if let Some(m) = parse::<procfs::Meminfo>(f.meminfo.as_ref(), buf) {
        out.insert(metric::LIMIT_PHYSICAL_MEMORY.to_owned(), m.mem_total as f64);
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
        assert!(m["fds.to.pipe"] >= 2.0, "{m:?}");
        assert!(m[metric::THREADS] >= 1.0);
        assert!(m.contains_key(metric::LIMIT_NOFILE_SOFT));
        drop((listener, r, w));
    }

    #[test]
    fn a_tcp_table_line_gives_its_state_and_peer_only_for_own_sockets() {
        let line = b"   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 \
                     00000000  1000        0 424242 1 0000000000000000 100 0 0 10 0\n";
        let own: HashSet<u64> = [424242, 77].into();
        assert_eq!(
            own_socket(line, &own),
            Some(OwnSocket {
                inode: 424242,
                state: procfs::net::TcpState::Listen,
                local_port: 8080,
                peer: None
            })
        );
        assert_eq!(own_socket(line, &HashSet::new()), None);
        let header = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when \
                       retrnsmt   uid  timeout inode\n";
        assert_eq!(own_socket(header, &own), None);
        let out = b"   2: 0100007F:D431 0500000A:1538 01 00000000:00000000 00:00000000 \
                    00000000  1000        0 77 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(
            own_socket(out, &own).and_then(|s| s.peer),
            Some(("10.0.0.5".into(), 5432))
        );
    }
}
