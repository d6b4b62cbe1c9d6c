//! Storage behind one narrow trait: the embedded SQLite file, and
//! ClickHouse for fleets that need several analyzers.
//!
//! The trait speaks of what the engine asks (envelopes, the latest point,
//! a site's series), never of how a backend stores it, so each backend
//! answers aggregations natively. Ids are opaque `i64`s the store hands
//! out: row ids in SQLite, content hashes in ClickHouse.

pub(crate) mod clickhouse;
mod location;
pub(crate) mod rollup;
mod sqlite;
mod transition;

use serde::Serialize;

use crate::error::Result;
use crate::ingest::ValidBatch;
pub use crate::select::Selector;
use heaptide_wire::pprof::Frame;

pub use clickhouse::{ClickHouseStore, ClickHouseUrl};
pub use location::{open, open_read_only, Location};
pub use sqlite::{Durability, SqliteStore};
pub(crate) use transition::parse_severity;
pub(crate) use transition::StoredTransition;
pub use transition::{Transition, TransitionState, Watched};

/// How much of the store one fleet may claim: every new instance is
/// checked against these, so a caller that invents names cannot grow the
/// store's catalogue without end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    pub max_instances_per_service: u64,
    pub max_services: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_instances_per_service: crate::config::DEFAULT_MAX_INSTANCES_PER_SERVICE,
            max_services: crate::config::DEFAULT_MAX_SERVICES,
        }
    }
}

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
/// (or downsampled rows) in it, within one segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvelopeBucket {
    pub service: String,
    pub instance: String,
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

/// One stack's live estimate in one profile.
#[derive(Debug, Clone, Serialize)]
pub struct StackValue {
    pub stack_id: i64,
    pub bytes: i64,
    pub objects: i64,
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

/// Each stack's bytes and objects added up over `values`.
pub(crate) fn sum_stacks(values: impl IntoIterator<Item = StackValue>) -> Vec<StackValue> {
    let mut sums: std::collections::HashMap<i64, (i64, i64)> = Default::default();
    for v in values {
        let e = sums.entry(v.stack_id).or_default();
        e.0 += v.bytes;
        e.1 += v.objects;
    }
    sums.into_iter()
        .map(|(stack_id, (bytes, objects))| StackValue {
            stack_id,
            bytes,
            objects,
        })
        .collect()
}

/// Live bytes by age bucket ([`heaptide_wire::AGE_BUCKETS_SECS`]).
pub type Ages = [u64; heaptide_wire::AGE_BUCKETS_SECS.len()];

/// One active alert as kept: its fingerprint and the alert as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAlert {
    pub key: String,
    pub alert: String,
}

/// Which services one analyzer evaluates and alerts on, when several
/// share a store: `index` of `count`, by a hash of the service name, as
/// Prometheus's `hashmod` splits targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// Whether this shard evaluates `service`. A service is judged whole
    /// (findings are corroborated across its instances), so the hash is of
    /// the service alone.
    pub fn owns(&self, service: &str) -> bool {
        use std::hash::Hasher;
        let mut h = fnv::FnvHasher::default();
        h.write(service.as_bytes());
        h.finish() % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || {
            crate::error::Error::invalid(
                "shard",
                format!("{s:?} is not INDEX/COUNT, like 0/2, with INDEX below COUNT"),
            )
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) =
            (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// A batch handed to the store: stored already, or waiting in an insert
/// that gathers many agents' batches. Either way it is acknowledged only
/// once [`Receipt::wait`] or [`Receipt::done`] says it is stored.
pub struct Receipt {
    outcome: IngestOutcome,
    stored: Option<tokio::sync::oneshot::Receiver<Result<()>>>,
}

impl Receipt {
    /// A batch already stored.
    pub fn ready(outcome: IngestOutcome) -> Self {
        Receipt {
            outcome,
            stored: None,
        }
    }

    /// A batch that is stored once `stored` says so.
    pub(crate) fn pending(
        outcome: IngestOutcome,
        stored: tokio::sync::oneshot::Receiver<Result<()>>,
    ) -> Self {
        Receipt {
            outcome,
            stored: Some(stored),
        }
    }

    /// Blocks until the batch is stored; not from async code.
    pub fn wait(self) -> Result<IngestOutcome> {
        match self.stored {
            None => Ok(self.outcome),
            Some(rx) => rx
                .blocking_recv()
                .unwrap_or_else(|_| Err(stopped()))
                .map(|()| self.outcome),
        }
    }

    /// Waits until the batch is stored, without a thread.
    pub async fn done(self) -> Result<IngestOutcome> {
        match self.stored {
            None => Ok(self.outcome),
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| Err(stopped()))
                .map(|()| self.outcome),
        }
    }
}

fn stopped() -> crate::error::Error {
    crate::error::Error::StoreUnavailable {
        url: "store".into(),
        reason: "the store's writer stopped".into(),
    }
}

/// The storage contract: the data agents send, and (as the supertrait
/// [`EvaluationState`]) what continuous evaluation keeps of its own. Every
/// method is synchronous; async callers run them on a blocking thread.
pub trait Store: EvaluationState + Send + Sync + 'static {
    /// Hands a batch to the store. The batch may be dropped as soon as
    /// this returns; the receipt says when it is stored.
    fn submit(&self, batch: &ValidBatch, received_ms: i64) -> Result<Receipt>;
    /// Stores a batch and waits until it is stored.
    fn ingest(&self, batch: &ValidBatch, received_ms: i64) -> Result<IngestOutcome> {
        self.submit(batch, received_ms)?.wait()
    }
    fn instances(&self, service: Option<&str>) -> Result<Vec<InstanceInfo>>;
    fn segments(&self, service: &str, instance: &str) -> Result<Vec<Segment>>;
    fn metric_names(&self, service: &str, instance: Option<&str>) -> Result<Vec<String>>;
    fn series(&self, sel: &Selector, metric: &str) -> Result<Vec<Point>>;
    /// Buckets of `bucket_ms` of `metric` in `sel`, each with its minimum
    /// and maximum, in time order: the engine's input, computed where the
    /// data is, so raw points never reach the analyzer.
    fn envelope(&self, sel: &Selector, metric: &str, bucket_ms: i64)
        -> Result<Vec<EnvelopeBucket>>;
    /// [`Store::envelope`] of each of `metrics`, by metric: one query for
    /// a networked store.
    fn envelope_each(
        &self,
        sel: &Selector,
        metrics: &[&str],
        bucket_ms: i64,
    ) -> Result<std::collections::HashMap<String, Vec<EnvelopeBucket>>> {
        let mut out = std::collections::HashMap::new();
        for m in metrics {
            out.insert((*m).to_owned(), self.envelope(sel, m, bucket_ms)?);
        }
        Ok(out)
    }
    /// The last point of `metric` in `sel`, without reading the rest.
    fn latest(&self, sel: &Selector, metric: &str) -> Result<Option<Point>>;
    /// The last point of each of `metrics` in `sel` that has one: the
    /// latest per series, which a networked store answers in one query.
    fn latest_each(
        &self,
        sel: &Selector,
        metrics: &[&str],
    ) -> Result<std::collections::HashMap<String, Point>> {
        let mut out = std::collections::HashMap::new();
        for m in metrics {
            if let Some(p) = self.latest(sel, m)? {
                out.insert((*m).to_owned(), p);
            }
        }
        Ok(out)
    }
    /// [`Store::envelope_each`] of each of `instances` of the service
    /// `sel` names, by instance then metric: one query for a networked
    /// store, one instance at a time for an embedded one.
    fn envelopes_of(
        &self,
        sel: &Selector,
        instances: &[&str],
        metrics: &[&str],
        bucket_ms: i64,
    ) -> Result<ByInstance<Vec<EnvelopeBucket>>> {
        let service = sel.service.as_deref().unwrap_or_default();
        let mut out = std::collections::HashMap::new();
        for i in instances {
            let one = sel.for_instance(service, i);
            out.insert(
                (*i).to_owned(),
                self.envelope_each(&one, metrics, bucket_ms)?,
            );
        }
        Ok(out)
    }
    /// [`Store::latest_each`] of each of `instances` of the service `sel`
    /// names, by instance then metric: one query for a networked store.
    fn latest_of(
        &self,
        sel: &Selector,
        instances: &[&str],
        metrics: &[&str],
    ) -> Result<ByInstance<Point>> {
        let service = sel.service.as_deref().unwrap_or_default();
        let mut out = std::collections::HashMap::new();
        for i in instances {
            let one = sel.for_instance(service, i);
            out.insert((*i).to_owned(), self.latest_each(&one, metrics)?);
        }
        Ok(out)
    }
    fn pauses(&self, sel: &Selector) -> Result<Vec<StoredPause>>;
    fn profiles(&self, sel: &Selector) -> Result<Vec<StoredProfile>>;
    fn profile_nearest(
        &self,
        service: &str,
        instance: &str,
        at_ms: i64,
    ) -> Result<Option<StoredProfile>>;
    fn profile_values(&self, profile_id: i64) -> Result<Vec<StackValue>>;
    /// The profile nearest `at_ms` of each of `instances` of `service`
    /// that has one: one query for a networked store.
    fn profiles_nearest(
        &self,
        service: &str,
        instances: &[&str],
        at_ms: i64,
    ) -> Result<Vec<StoredProfile>> {
        let mut out = Vec::new();
        for i in instances {
            out.extend(self.profile_nearest(service, i, at_ms)?);
        }
        Ok(out)
    }
    /// Each stack's bytes and objects summed over the profiles
    /// `profile_ids`, in any order: what a merged flamegraph draws,
    /// summed where the data is.
    fn profile_sums(&self, profile_ids: &[i64]) -> Result<Vec<StackValue>> {
        let mut all = Vec::new();
        for id in profile_ids {
            all.extend(self.profile_values(*id)?);
        }
        Ok(sum_stacks(all))
    }
    /// The gzipped pprof as received, while it is kept (see
    /// [`RetentionPolicy::raw_profile_keep_ms`]).
    fn profile_raw(&self, profile_id: i64) -> Result<Option<Vec<u8>>>;
    /// Live bytes by age of the profile's stacks that have them.
    fn profile_ages(&self, profile_id: i64) -> Result<std::collections::HashMap<i64, Ages>>;
    /// One stack's values in the profiles of `sel`, ordered by time.
    fn site_series(&self, sel: &Selector, stack_id: i64) -> Result<Vec<SitePoint>>;
    /// Every stack's value in every profile of `sel`, ordered by time.
    fn site_points(&self, sel: &Selector) -> Result<Vec<SitePoint>>;
    fn stacks(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<Frame>)>>;
    fn retain(&self, now_ms: i64, policy: &RetentionPolicy) -> Result<RetentionReport>;
    /// Reads worth running at once per core of the analyzer: 1 where a
    /// read is the analyzer's own CPU work (SQLite), more where it mostly
    /// waits on another server.
    fn reads_per_core(&self) -> usize {
        1
    }
    /// The store's size on disk, cheaply, for `/metrics`.
    fn disk_bytes(&self) -> Result<u64>;
    fn stats(&self) -> Result<StoreStats>;
}

/// What continuous evaluation keeps between passes: each instance's
/// latest findings, each shard's active alerts, and the history of what
/// began, changed, fired and resolved. Small, rewritten often, and read by
/// every page; apart from the data so that a backend may keep it elsewhere.
pub trait EvaluationState {
    /// Replaces the kept findings of one instance.
    fn keep_findings(
        &self,
        service: &str,
        instance: &str,
        evaluated_ms: i64,
        findings_json: &str,
    ) -> Result<()>;
    /// Replaces the kept findings of each instance in `rows`: one write
    /// for a networked store.
    fn keep_findings_each(&self, rows: &[KeptFindings]) -> Result<()> {
        for r in rows {
            self.keep_findings(&r.service, &r.instance, r.evaluated_ms, &r.findings)?;
        }
        Ok(())
    }
    /// The kept findings of every instance of `service` (or of all).
    fn kept_findings(&self, service: Option<&str>) -> Result<Vec<KeptFindings>>;
    /// When each instance's kept findings were made, by (service,
    /// instance), without the findings: what a pass needs to pick the
    /// services to judge, in memory that does not grow with findings.
    fn kept_times(&self) -> Result<std::collections::HashMap<(String, String), i64>>;
    /// Replaces the active alerts of `shard`.
    fn keep_alerts(&self, shard: Shard, alerts: &[KeptAlert]) -> Result<()>;
    /// The active alerts of every shard.
    fn kept_alerts(&self) -> Result<Vec<KeptAlert>>;
    fn record_transitions(&self, transitions: &[Transition]) -> Result<()>;
    /// The newest `limit` transitions of one instance, newest first.
    fn transitions(&self, service: &str, instance: &str, limit: usize) -> Result<Vec<Transition>>;
}
