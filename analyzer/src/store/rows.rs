//! The rows the store hands back, and the helpers its backends share to
//! build them.

use serde::Serialize;

/// What ingest did with a batch.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IngestOutcome {
    pub samples: usize,
    pub pause_events: usize,
    pub profiles: usize,
    /// True when this batch started a new segment (a new process).
    pub new_segment: bool,
}

/// One instance of a service, as last reported.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceInfo {
    pub service: String,
    pub instance: String,
    pub host: String,
    pub pid: u32,
    pub start_time_ms: i64,
    pub agent_version: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Processes seen for this instance; more than one means restarts.
    pub segments: u32,
    /// The id of its newest process's segment. A fleet is read in cohorts
    /// in this order, which is the order of the stores' rows, so that a
    /// cohort's rows lie together (`detect::cohort`).
    #[serde(skip)]
    pub segment: i64,
    pub heap_profiling: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heap_profiling_reason: Option<String>,
    pub agent_stats: heaptide_wire::AgentStats,
}

/// A process lifetime of one instance. Trends are never fitted across two.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub id: i64,
    pub pid: u32,
    pub start_time_ms: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// The agent's labels for this process (`version`, `region`, ...).
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub instance: String,
    pub segment: i64,
    pub ts_ms: i64,
    /// Mean over the bucket (the value itself at raw resolution).
    pub value: f64,
    pub min: f64,
    pub max: f64,
}

/// One bucket of a metric's envelope: the floor and peak of the samples
/// (or downsampled rows) in it, within one segment. Its names are shared
/// by every bucket of the segment: a cohort's day is a hundred thousand
/// buckets, and a string of their own each was a tenth of reading it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvelopeBucket {
    pub service: std::sync::Arc<str>,
    pub instance: std::sync::Arc<str>,
    pub segment: i64,
    /// The middle of the samples the bucket holds.
    pub ts_ms: i64,
    /// Its first sample's time.
    pub first_ms: i64,
    pub min: f64,
    pub max: f64,
    /// Raw samples the bucket stands for.
    pub samples: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredPause {
    pub instance: String,
    pub start_ms: i64,
    pub duration_ms: f64,
    pub source: heaptide_wire::PauseSource,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredProfile {
    pub id: i64,
    pub instance: String,
    pub segment: i64,
    pub ts_ms: i64,
    pub sample_period_bytes: u64,
    pub total_bytes: i64,
    pub total_objects: i64,
}

/// One stack's live estimate in one profile, and what it allocated since
/// its process's previous profile.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StackValue {
    pub stack_id: i64,
    pub bytes: i64,
    pub objects: i64,
    pub alloc_bytes: i64,
    pub alloc_objects: i64,
}

/// One profile's value for a stack, for per-site series.
#[derive(Debug, Clone, Serialize)]
pub struct SitePoint {
    pub profile_id: i64,
    pub ts_ms: i64,
    pub stack_id: i64,
    pub bytes: i64,
    pub objects: i64,
}

/// The latest findings kept for one instance.
#[derive(Debug, Clone, Serialize)]
pub struct KeptFindings {
    pub service: String,
    pub instance: String,
    /// When the engine judged it.
    pub evaluated_ms: i64,
    /// The engine's findings, as JSON.
    pub findings: String,
}

/// What a retention pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionReport {
    pub samples_deleted: u64,
    pub samples_downsampled: u64,
    pub profiles_deleted: u64,
    pub raw_profiles_dropped: u64,
    pub pauses_deleted: u64,
    pub stacks_deleted: u64,
}

/// Size of the store and how it divides over agent-days.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    /// Everything the store holds on disk: SQLite's file and WAL, or the
    /// active parts of ClickHouse's tables.
    pub disk_bytes: u64,
    /// The bytes that hold data: SQLite's pages in use (freed pages are
    /// reused before the file grows), or ClickHouse's compressed columns.
    pub data_bytes: u64,
    pub instances: u64,
    pub segments: u64,
    pub samples: u64,
    pub profiles: u64,
    pub stacks: u64,
    /// Sum over segments of the time they were reporting, in days.
    pub agent_days: f64,
    pub bytes_per_agent_day: Option<f64>,
}

/// Downsampling tiers: data older than `after_ms` is kept at `bucket_ms`.
#[derive(Debug, Clone)]
pub struct RetentionPolicy {
    pub keep_ms: i64,
    pub tiers: Vec<(i64, i64)>,
    /// Profiles older than this are thinned to one per `profile_bucket_ms`.
    pub profile_thin_after_ms: i64,
    pub profile_bucket_ms: i64,
    /// How long the pprof bytes as received are kept.
    pub raw_profile_keep_ms: i64,
}

impl RetentionPolicy {
    /// 10 s raw for 24 h, then 1 min to 72 h, then 10 min; profiles thinned
    /// to one per 10 min after 24 h; pprof bytes as received kept 1 h.
    pub fn with_retention(keep_ms: i64) -> Self {
        const H: i64 = 3_600_000;
        RetentionPolicy {
            keep_ms,
            tiers: vec![(24 * H, 60_000), (72 * H, 600_000)],
            profile_thin_after_ms: 24 * H,
            profile_bucket_ms: 600_000,
            raw_profile_keep_ms: H,
        }
    }
}

/// What a read of several instances returns: by instance, then by
/// metric.
pub type ByInstance<T> = std::collections::HashMap<String, std::collections::HashMap<String, T>>;

/// A read of `instances` before anything is found: each with nothing.
pub(crate) fn by_instance<T>(instances: &[&str]) -> ByInstance<T> {
    instances
        .iter()
        .map(|i| ((*i).to_owned(), Default::default()))
        .collect()
}

/// Keeps `p` as its instance's latest `metric`, unless a newer one is
/// kept already (an instance's segments each give their newest).
pub(crate) fn keep_newest(out: &mut ByInstance<Point>, metric: &str, p: Point) {
    let Some(mine) = out.get_mut(&p.instance) else {
        return;
    };
    if mine.get(metric).is_none_or(|have| have.ts_ms < p.ts_ms) {
        mine.insert(metric.to_owned(), p);
    }
}

/// Each stack's values added up over `values`.
pub(crate) fn sum_stacks(values: impl IntoIterator<Item = StackValue>) -> Vec<StackValue> {
    let mut sums: std::collections::HashMap<i64, StackValue> = Default::default();
    for v in values {
        let e = sums.entry(v.stack_id).or_insert_with(|| StackValue {
            stack_id: v.stack_id,
            ..Default::default()
        });
        e.bytes += v.bytes;
        e.objects += v.objects;
        e.alloc_bytes += v.alloc_bytes;
        e.alloc_objects += v.alloc_objects;
    }
    sums.into_values().collect()
}

/// Live bytes by age bucket ([`heaptide_wire::AGE_BUCKETS_SECS`]).
pub type Ages = [u64; heaptide_wire::AGE_BUCKETS_SECS.len()];

/// One active alert as kept: its fingerprint and the alert as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAlert {
    pub key: String,
    pub alert: String,
}
