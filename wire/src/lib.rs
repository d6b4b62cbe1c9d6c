#![doc = include_str!("../README.md")]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod bounded;
pub mod otlp;
pub mod pprof;

/// The wire version this crate speaks. The analyzer rejects other versions.
pub const WIRE_VERSION: u32 = 1;

/// The ingest path on the analyzer.
pub const INGEST_PATH: &str = "/v1/ingest";
/// Where heap profiles from other pprof sources are posted, with
/// `?service=&instance=`.
pub const INGEST_PPROF_PATH: &str = "/v1/ingest/pprof";
/// Where an agent uploads the object file of a build-id the analyzer
/// asked it for (`debuginfo_wanted` in a batch's reply), with
/// `?service=&instance=`: the route's pattern, and the path made for one
/// build-id by [`debuginfo_path`].
pub const DEBUGINFO_PATH: &str = "/v1/debuginfo/{build_id}";

/// The upload path of `build_id`.
pub fn debuginfo_path(build_id: &str) -> String {
    DEBUGINFO_PATH.replace("{build_id}", build_id)
}

/// The key of a batch's reply that lists the build-ids the analyzer asks
/// this agent to upload.
pub const DEBUGINFO_WANTED: &str = "debuginfo_wanted";

/// One upload from one agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Must equal [`WIRE_VERSION`].
    pub version: u32,
    pub agent: AgentInfo,
    /// Increases by one per batch within one agent process; lets the analyzer
    /// see gaps and ignore replays.
    pub seq: u64,
    /// Unix time in milliseconds when the batch was sealed.
    pub sent_at_ms: i64,
    pub heap_profiling: HeapProfilingStatus,
    pub agent_stats: AgentStats,
    #[serde(
        default,
        deserialize_with = "bounded::vec::<_, _, { bounded::MAX_SAMPLES }>"
    )]
    pub samples: Vec<MetricSample>,
    #[serde(
        default,
        deserialize_with = "bounded::vec::<_, _, { bounded::MAX_PAUSES }>"
    )]
    pub pause_events: Vec<PauseEvent>,
    #[serde(
        default,
        deserialize_with = "bounded::vec::<_, _, { bounded::MAX_PROFILES }>"
    )]
    pub profiles: Vec<EncodedProfile>,
}

/// Who is sending. A new `pid` or `start_time_ms` for the same
/// (`service`, `instance`) is a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentInfo {
    pub service: String,
    pub instance: String,
    pub host: String,
    pub pid: u32,
    /// Unix time in milliseconds when the process started.
    pub start_time_ms: i64,
    /// Version of the agent crate.
    pub agent_version: String,
    #[serde(
        default,
        deserialize_with = "bounded::map::<_, _, { bounded::MAX_LABELS }>"
    )]
    pub labels: BTreeMap<String, String>,
}

/// Whether heap profiles are being taken, and if not, why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeapProfilingStatus {
    pub enabled: bool,
    /// Set when `enabled` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Mean bytes between heap samples (jemalloc's `2^lg_prof_sample`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_period_bytes: Option<u64>,
    /// What records the stacks of sampled allocations: `frame-pointers`
    /// or `libgcc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unwinder: Option<String>,
    /// The build-ids of the objects whose addresses the profiles carry
    /// unnamed (`HEAPTIDE_SYMBOLIZE=analyzer`), so that the analyzer can
    /// ask for a debug file it lacks before the first profile comes.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded::vec::<_, _, { bounded::MAX_UNNAMED_OBJECTS }>"
    )]
    pub unnamed_objects: Vec<String>,
}

/// What the agent costs its host, cumulative since the agent started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentStats {
    /// CPU seconds used by the agent's own threads.
    pub cpu_seconds: f64,
    /// Heap bytes held by the agent's own threads (allocated minus freed).
    pub heap_bytes: u64,
    /// Queue items dropped because the queue was full.
    pub dropped_items: u64,
    /// Bytes of those dropped items.
    pub dropped_bytes: u64,
    /// Upload attempts that failed.
    pub send_failures: u64,
    /// Heap profiles that could not be taken.
    pub profile_failures: u64,
}

/// Every metric read at one instant. Names are listed in `docs/wire.md`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricSample {
    pub ts_ms: i64,
    #[serde(deserialize_with = "bounded::map::<_, _, { bounded::MAX_METRICS_PER_SAMPLE }>")]
    pub metrics: BTreeMap<String, f64>,
}

/// A stall: the pause meter woke late, the tokio runtime lagged, or the
/// application declared a stop-the-world section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PauseEvent {
    /// Unix time in milliseconds when the pause began.
    pub start_ms: i64,
    pub duration_ms: f64,
    pub source: PauseSource,
    /// The application's name for the pause; empty for measured stalls.
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PauseSource {
    /// The dedicated pause-meter thread woke late.
    Meter,
    /// A tokio runtime ran a timer late.
    Tokio,
    /// The application reported a pause through the API.
    App,
}

impl PauseSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseSource::Meter => "meter",
            PauseSource::Tokio => "tokio",
            PauseSource::App => "app",
        }
    }

    /// The inverse of [`PauseSource::as_str`].
    pub fn parse(s: &str) -> Option<PauseSource> {
        [PauseSource::Meter, PauseSource::Tokio, PauseSource::App]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// The unit of a resource or a metric, from the agent's sample to the
/// dashboard's axis.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Bytes,
    Fds,
    Threads,
    Sockets,
    /// Milliseconds of a pause.
    Millis,
    /// Process restarts.
    Restarts,
    /// Slots of a pool in use: connections checked out, permits held.
    Slots,
    /// Items waiting in a queue.
    Items,
    /// Tasks of an async runtime.
    Tasks,
    /// A share of time, in percent: memory pressure.
    Percent,
}

impl Unit {
    /// The name used in text and JSON: `bytes`, `fds`, `threads`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Bytes => "bytes",
            Unit::Fds => "fds",
            Unit::Threads => "threads",
            Unit::Sockets => "sockets",
            Unit::Millis => "ms",
            Unit::Restarts => "restarts",
            Unit::Slots => "slots",
            Unit::Items => "items",
            Unit::Tasks => "tasks",
            Unit::Percent => "percent",
        }
    }
}

/// A sampled live-heap snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EncodedProfile {
    pub ts_ms: i64,
    /// Mean bytes between samples that produced it.
    pub sample_period_bytes: u64,
    /// Gzipped pprof (`perftools.profiles.Profile`) with the sample types
    /// `inuse_objects/count` and `inuse_space/bytes`, already scaled to
    /// unbiased estimates, in standard base64.
    pub pprof_gz_base64: String,
    /// Live bytes by age for the profile's stacks whose sampled
    /// allocations the agent saw being made; absent from older agents and
    /// from other pprof sources.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "bounded::vec::<_, _, { bounded::MAX_AGE_ROWS }>"
    )]
    pub ages: Vec<StackAges>,
}

/// Upper edges, in seconds, of the age buckets of [`StackAges`]: under ten
/// seconds, a minute, ten minutes, an hour, six hours, a day, and older
/// (the last edge is never reached).
pub const AGE_BUCKETS_SECS: [u64; 7] = [10, 60, 600, 3600, 21_600, 86_400, u64::MAX];

/// One stack's live bytes by age, unbiased like the profile's values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StackAges {
    /// Index of the stack among the profile's samples.
    pub sample: u32,
    /// Bytes per bucket of [`AGE_BUCKETS_SECS`].
    pub bytes: [u64; AGE_BUCKETS_SECS.len()],
}

pub mod metric;

/// Checks a metric name: 1 to 128 bytes of `[a-z0-9._-]`, and after
/// the target prefixes ([`metric::FDS_TARGET_PREFIX`],
/// [`metric::TCP_PEER_PREFIX`]) also `/`, `:`, `[` and `]`, which paths and
/// addresses need.
pub fn valid_metric_name(name: &str) -> bool {
    let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
    let target = [metric::FDS_TARGET_PREFIX, metric::TCP_PEER_PREFIX]
        .iter()
        .find_map(|p| name.strip_prefix(p));
    !name.is_empty()
        && name.len() <= 128
        && match target {
            Some(t) => t.bytes().all(|b| plain(b) || b"/:[]".contains(&b)),
            None => name.bytes().all(plain),
        }
}

/// An fd's target as it is counted: a path with each run of digits as
/// `N` (`/var/log/app-N.log`), lowercased, other characters as `_`, cut to
/// fit a metric name; `pipe`; an anon inode's kind (`eventfd`, `epoll`).
pub fn fd_target_name(target: &str) -> String {
    let mut out = String::with_capacity(target.len().min(96));
    let mut in_digits = false;
    for c in target.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('n');
            }
            in_digits = true;
            continue;
        }
        in_digits = false;
        let c = c.to_ascii_lowercase();
        out.push(if c.is_ascii_lowercase() || "._-/:[]".contains(c) {
            c
        } else {
            '_'
        });
        if out.len() >= 96 {
            break;
        }
    }
    out
}

/// Turns a pool's or queue's name into the metric-name alphabet:
/// lowercased, other characters as `_`, at most 48 bytes, so that its
/// longest gauge stays a valid metric name.
pub fn gauge_name(name: &str) -> String {
    let out: String = name
        .chars()
        .take(48)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        "unnamed".into()
    } else {
        out
    }
}

/// Turns a thread name into the prefix it is counted under: trailing digits,
/// `-`, `_`, `#` and spaces are cut, so `tokio-runtime-worker-3` and
/// `tokio-runtime-worker-12` share `tokio-runtime-worker`. The result is
/// lowercased and mapped into the metric-name alphabet.
pub fn thread_name_prefix(name: &str) -> String {
    let trimmed = name.trim_end_matches(|c: char| {
        c.is_ascii_digit() || c == '-' || c == '_' || c == '#' || c == ' '
    });
    let mut out: String = trimmed
        .chars()
        .take(64)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push_str("unnamed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_fold_numbers_and_keep_paths_and_addresses() {
        assert_eq!(
            fd_target_name("/var/log/App-2026-12.log"),
            "/var/log/app-n-n.log"
        );
        assert_eq!(
            fd_target_name("anon_inode:[eventfd]"),
            "anon_inode:[eventfd]"
        );
        let m = format!(
            "{}{}",
            metric::FDS_TARGET_PREFIX,
            fd_target_name("/tmp/x y")
        );
        assert!(valid_metric_name(&m), "{m}");
        assert!(valid_metric_name("tcp.to.10.0.0.5:5432"));
        assert!(
            !valid_metric_name("fds.file:x"),
            "only after a target prefix"
        );
        assert!(!valid_metric_name("tcp.to.a b"));
    }

    #[test]
    fn gauge_names_round_trip_through_their_metrics() {
        let name = gauge_name("DB Pool.primary");
        assert_eq!(name, "db_pool_primary");
        let m = metric::pool(&name, metric::POOL_IN_USE);
        assert!(valid_metric_name(&m));
        assert_eq!(
            metric::gauge_of(&m, metric::POOL_PREFIX, metric::POOL_IN_USE),
            Some("db_pool_primary")
        );
        assert_eq!(
            metric::gauge_of("pool.in_use", metric::POOL_PREFIX, metric::POOL_IN_USE),
            None
        );
        assert!(valid_metric_name(&metric::pool(
            &gauge_name(&"x".repeat(99)),
            metric::POOL_WAITING
        )));
    }

    #[test]
    fn thread_prefixes_group_numbered_pools() {
        assert_eq!(
            thread_name_prefix("tokio-runtime-worker-3"),
            "tokio-runtime-worker"
        );
        assert_eq!(
            thread_name_prefix("tokio-runtime-worker-12"),
            "tokio-runtime-worker"
        );
        assert_eq!(thread_name_prefix("Worker Pool#7"), "worker_pool");
        assert_eq!(thread_name_prefix("1234"), "unnamed");
        assert_eq!(thread_name_prefix("main"), "main");
    }

    #[test]
    fn metric_names_are_checked() {
        assert!(valid_metric_name("threads.name.leaky-pool"));
        assert!(!valid_metric_name("Heap"));
        assert!(!valid_metric_name(""));
        assert!(!valid_metric_name("a;drop table"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let json = r#"{"ts_ms":1,"metrics":{},"extra":1}"#;
        assert!(serde_json::from_str::<MetricSample>(json).is_err());
    }
}
