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
mod rows;
mod sqlite;
mod transition;

use crate::error::Result;
use crate::ingest::ValidBatch;
pub use crate::select::Selector;
use heaptide_wire::pprof::Frame;

pub use clickhouse::{ClickHouseStore, ClickHouseUrl};
pub use location::{open, open_read_only, Location};
pub use rows::*;
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
    /// [`Store::metric_names`] of each of `instances` of `service`, by
    /// instance: one query for a networked store.
    fn metric_names_of(
        &self,
        service: &str,
        instances: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<String>>> {
        instances
            .iter()
            .map(|i| Ok(((*i).to_owned(), self.metric_names(service, Some(i))?)))
            .collect()
    }
    /// Every metric name the store holds data of, for the cap on names
    /// (`ingest::names`).
    fn all_metric_names(&self) -> Result<Vec<String>>;
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
    /// [`Store::profiles`] of each of `instances` of the service `sel`
    /// names, by instance: one query for a networked store.
    fn profiles_of(
        &self,
        sel: &Selector,
        instances: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<StoredProfile>>> {
        let service = sel.service.as_deref().unwrap_or_default();
        instances
            .iter()
            .map(|i| {
                Ok((
                    (*i).to_owned(),
                    self.profiles(&sel.for_instance(service, i))?,
                ))
            })
            .collect()
    }
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
    /// The stored frames of `build_id` at each of `offsets` (offsets in
    /// the object's file) that has them; an empty list is an address its
    /// debug file did not name.
    fn symbols(
        &self,
        build_id: &str,
        offsets: &[u64],
    ) -> Result<std::collections::HashMap<u64, Vec<Frame>>>;
    /// Keeps the frames of `build_id` at offsets, for the whole fleet.
    fn keep_symbols(&self, build_id: &str, rows: &[(u64, Vec<Frame>)]) -> Result<()>;
    fn retain(&self, now_ms: i64, policy: &RetentionPolicy) -> Result<RetentionReport>;
    /// Readies what a fleet's judgement reads at `now_ms`, where the store
    /// keeps something for that (ClickHouse settles the quarter hours that
    /// are over), at the start of each evaluation pass; what any read
    /// returns does not depend on it, only how long it takes. SQLite's
    /// rollups are numbers already.
    fn settle(&self, _now_ms: i64) -> Result<()> {
        Ok(())
    }
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
