//! Metric names, so that the agent and the analyzer cannot drift apart.

pub const HEAP_ALLOCATED: &str = "heap.allocated";
pub const HEAP_ACTIVE: &str = "heap.active";
pub const HEAP_RESIDENT: &str = "heap.resident";
pub const HEAP_MAPPED: &str = "heap.mapped";
pub const HEAP_RETAINED: &str = "heap.retained";
pub const HEAP_METADATA: &str = "heap.metadata";
/// Bytes allocated since the agent began counting, freed or not: a
/// counter, estimated from the sampled allocations, unbiased. Its growth
/// per request is what `check`'s allocation budget reads.
pub const HEAP_ALLOC_BYTES: &str = "heap.alloc_bytes";
pub const RSS: &str = "process.rss";
pub const VSIZE: &str = "process.vsize";
pub const MINOR_FAULTS: &str = "process.minor_faults";
pub const MAJOR_FAULTS: &str = "process.major_faults";
pub const VOLUNTARY_CTXT: &str = "process.voluntary_ctxt_switches";
pub const INVOLUNTARY_CTXT: &str = "process.involuntary_ctxt_switches";
pub const FDS: &str = "fds";
/// Prefix of the per-kind fd counts: `fds.file`, `fds.socket`, `fds.pipe`,
/// `fds.anon`, `fds.other`.
pub const FDS_KIND_PREFIX: &str = "fds.";
pub const THREADS: &str = "threads";
/// Prefix of the per-name thread counts: `threads.name.<prefix>`.
pub const THREADS_NAME_PREFIX: &str = "threads.name.";
/// Total TCP sockets of the process.
pub const TCP: &str = "tcp";
/// Prefix of the per-state socket counts: `tcp.established`, `tcp.close_wait`, ...
pub const TCP_STATE_PREFIX: &str = "tcp.";
pub const LIMIT_NOFILE_SOFT: &str = "limit.nofile.soft";
pub const LIMIT_NOFILE_HARD: &str = "limit.nofile.hard";
pub const LIMIT_NPROC: &str = "limit.nproc";
pub const LIMIT_AS: &str = "limit.as";
pub const LIMIT_THREADS_MAX: &str = "limit.threads_max";
pub const LIMIT_PIDS_MAX: &str = "limit.cgroup.pids_max";
pub const LIMIT_MEMORY_MAX: &str = "limit.cgroup.memory_max";
pub const LIMIT_PHYSICAL_MEMORY: &str = "limit.physical_memory";
pub const CGROUP_MEMORY_CURRENT: &str = "cgroup.memory_current";
/// The cgroup's memory events, cumulative (v2 `memory.events`; v1's
/// `failcnt` as `max`, and the `oom_kill` of `memory.oom_control`).
pub const CGROUP_EVENTS_HIGH: &str = "cgroup.memory_events.high";
pub const CGROUP_EVENTS_MAX: &str = "cgroup.memory_events.max";
pub const CGROUP_EVENTS_OOM: &str = "cgroup.memory_events.oom";
pub const CGROUP_EVENTS_OOM_KILL: &str = "cgroup.memory_events.oom_kill";
/// Memory pressure (PSI), the share of the last 10 s in which some,
/// or all, tasks waited on memory, in percent.
pub const PRESSURE_MEMORY_SOME: &str = "pressure.memory.some_avg10";
pub const PRESSURE_MEMORY_FULL: &str = "pressure.memory.full_avg10";
/// 1 in a sample whose heap profile was taken at once because memory
/// ran short: a new high of RSS or heap above the agent's pressure
/// share of the limit, or new cgroup memory events.
pub const AGENT_PRESSURE: &str = "agent.pressure";
/// 1 in the last sample of an agent that is stopping: a segment that
/// ends without it ended by a kill or a crash.
pub const AGENT_STOPPING: &str = "agent.stopping";
pub const PAUSE_P50_MS: &str = "pause.p50_ms";
pub const PAUSE_P99_MS: &str = "pause.p99_ms";
pub const PAUSE_P999_MS: &str = "pause.p999_ms";
pub const PAUSE_MAX_MS: &str = "pause.max_ms";
pub const TOKIO_LAG_P99_MS: &str = "tokio.lag_p99_ms";
pub const TOKIO_LAG_MAX_MS: &str = "tokio.lag_max_ms";
/// Open fds by target: `fds.to./var/log/app-n.log`, `fds.to.pipe`,
/// `fds.to.eventfd`, `fds.to.tcp:10.0.0.5:5432` ([`super::fd_target_name`]).
pub const FDS_TARGET_PREFIX: &str = "fds.to.";
/// The process's TCP sockets by peer: `tcp.to.10.0.0.5:5432`, with an
/// ephemeral peer port (a client's, on an accepted connection) as `n`.
pub const TCP_PEER_PREFIX: &str = "tcp.to.";
/// Whether `name` counts by target ([`FDS_TARGET_PREFIX`],
/// [`TCP_PEER_PREFIX`]), not by kind or state.
pub fn is_target(name: &str) -> bool {
    name.starts_with(FDS_TARGET_PREFIX) || name.starts_with(TCP_PEER_PREFIX)
}

/// RSS split into parts that add up to it: `rss.<part>`.
pub const RSS_PART_PREFIX: &str = "rss.";
/// jemalloc's live allocations.
pub const RSS_PART_HEAP: &str = "rss.heap";
/// jemalloc's active pages not allocated: fragmentation.
pub const RSS_PART_FRAGMENTATION: &str = "rss.fragmentation";
pub const RSS_PART_ALLOCATOR_METADATA: &str = "rss.allocator_metadata";
/// jemalloc's resident pages neither active nor metadata: freed,
/// not yet returned.
pub const RSS_PART_ALLOCATOR_FREE: &str = "rss.allocator_free";
pub const RSS_PART_STACKS: &str = "rss.stacks";
/// Anonymous memory that is neither the allocator's nor a stack.
pub const RSS_PART_OUTSIDE: &str = "rss.outside_allocator";
pub const RSS_PART_FILE: &str = "rss.file";
/// The parts in the order they are stacked: the allocator's from the
/// heap up, then the rest.
pub const RSS_PARTS: [&str; 7] = [
    RSS_PART_HEAP,
    RSS_PART_FRAGMENTATION,
    RSS_PART_ALLOCATOR_METADATA,
    RSS_PART_ALLOCATOR_FREE,
    RSS_PART_STACKS,
    RSS_PART_OUTSIDE,
    RSS_PART_FILE,
];

/// Alive tasks of the tokio runtime the agent watches.
pub const TOKIO_TASKS_ALIVE: &str = "tokio.tasks_alive";
/// Tasks waiting in that runtime's global queue.
pub const TOKIO_GLOBAL_QUEUE: &str = "tokio.global_queue_depth";
/// Its blocking threads and their queue (builds with `tokio_unstable`).
pub const TOKIO_BLOCKING_THREADS: &str = "tokio.blocking_threads";
pub const TOKIO_BLOCKING_QUEUE: &str = "tokio.blocking_queue_depth";
/// Prefix of a pool's gauges: `pool.<name>.in_use`, `.idle`,
/// `.waiting` and `.capacity` ([`pool`]).
pub const POOL_PREFIX: &str = "pool.";
/// Prefix of a queue's gauges: `queue.<name>.depth` and, when it is
/// bounded, `.capacity`.
pub const QUEUE_PREFIX: &str = "queue.";
pub const POOL_IN_USE: &str = "in_use";
pub const POOL_IDLE: &str = "idle";
pub const POOL_WAITING: &str = "waiting";
pub const CAPACITY: &str = "capacity";
pub const QUEUE_DEPTH: &str = "depth";

/// A pool's gauge: `pool("db", POOL_IN_USE)` is `pool.db.in_use`.
pub fn pool(name: &str, part: &str) -> String {
    format!("{POOL_PREFIX}{name}.{part}")
}

/// A queue's gauge: `queue("jobs", QUEUE_DEPTH)` is `queue.jobs.depth`.
pub fn queue(name: &str, part: &str) -> String {
    format!("{QUEUE_PREFIX}{name}.{part}")
}

/// The name of the pool or queue a gauge belongs to, when `metric` is
/// `<prefix><name>.<part>`.
pub fn gauge_of<'a>(metric: &'a str, prefix: &str, part: &str) -> Option<&'a str> {
    let name = metric.strip_prefix(prefix)?.strip_suffix(part)?;
    name.strip_suffix('.').filter(|n| !n.is_empty())
}

/// Requests served, when the application reports them.
pub const REQUESTS: &str = "app.requests";
/// 1 when a resource is at its limit, or grew since the previous
/// sample at a rate that exhausts it within the hour; else 0. The
/// agent then samples fast, and the analyzer judges the instance at
/// once rather than at its next scheduled pass.
pub const AGENT_URGENT: &str = "agent.urgent";
/// The agent's configured sampling interval, in seconds. It samples
/// faster at times; the analyzer counts evidence in these intervals,
/// so that fast samples sharpen a verdict without making one sooner
/// than the configured pace would, unless the growth is urgent.
pub const AGENT_INTERVAL_SECONDS: &str = "agent.interval_seconds";
