//! The networked store: ClickHouse over its HTTP interface, shared by any
//! number of stateless analyzers.
//!
//! Nothing here needs a row id from the server. Segments, profiles and
//! stacks are named by 63 bits of SHA-256 over what identifies them, so
//! every analyzer computes the same id for the same thing, and a replayed
//! row lands on the sorting key of the first. Ingest is batched across
//! agents by one flusher per analyzer ([`write`]); reads fold replays
//! before aggregating ([`read`]); retention drops day partitions
//! ([`retention`]). SQL is written for ClickHouse 18.16, the oldest
//! server this store supports: no bound parameters, no `TTL`, no
//! `LowCardinality`.

mod arms;
mod findings;
mod http;
mod ids;
mod latest;
mod names;
mod read;
mod retention;
mod rollups;
mod rowbinary;
mod schema;
mod series;
mod settle;
mod symbols;
pub mod url;
mod write;

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::*;
use crate::error::Error;
use http::Client;
pub use url::ClickHouseUrl;

/// What went wrong talking to ClickHouse, before it is named with the
/// store's URL. Cloneable, because one failed insert fails every batch
/// it carried.
#[derive(Debug, Clone)]
pub(crate) enum ChError {
    /// No answer: refused, timed out, or the server cannot take work now.
    Unreachable(String),
    /// The user or password was refused.
    Auth,
    /// The server refused a statement.
    Query(String),
    /// An answer this store cannot read.
    Decode(String),
    /// More rows waiting to be inserted than the flusher holds.
    Behind,
}

pub struct ClickHouseStore {
    url: ClickHouseUrl,
    client: std::sync::Arc<Client>,
    bounds: Bounds,
    /// Ingest's flusher; read-only stores have none.
    flusher: Option<write::Flusher>,
    known: std::sync::Arc<Mutex<write::Known>>,
    /// Segments' names, remembered for the envelopes' rows.
    names: names::SegmentNames,
    /// The last alert generation this analyzer wrote.
    generation: std::sync::atomic::AtomicI64,
}

impl ClickHouseStore {
    /// Connects, creates the database and tables if needed, and starts
    /// the flusher.
    pub fn open(url: ClickHouseUrl) -> Result<Self> {
        let mut store = Self::connect(url, false)?;
        store.flusher = Some(write::Flusher::start(
            store.client.clone(),
            store.url.clone(),
            store.known.clone(),
        ));
        Ok(store)
    }

    /// Connects to a store that must already hold this analyzer's schema,
    /// without changing it: the read commands.
    pub fn open_read_only(url: ClickHouseUrl) -> Result<Self> {
        Self::connect(url, true)
    }

    fn connect(url: ClickHouseUrl, read_only: bool) -> Result<Self> {
        let client = Client::new(&url);
        let fail = |e| named(&url, e);
        let version = schema::stored_version(&client, &url.database).map_err(fail)?;
        let reason = if version > schema::SCHEMA_VERSION {
            Some(format!(
                "store schema version {version} is newer than this analyzer's {}",
                schema::SCHEMA_VERSION
            ))
        } else if read_only && version == 0 {
            return Err(Error::StoreMissing(url.to_string()));
        } else if read_only && version < schema::SCHEMA_VERSION {
            Some(format!(
                "store schema version {version} is older than this analyzer's {}; run `analyzer serve` on it once to upgrade it",
                schema::SCHEMA_VERSION
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::Config {
                path: url.to_string(),
                reason,
            });
        }
        if !read_only {
            schema::create(&client, &url.database, version).map_err(fail)?;
        }
        Ok(ClickHouseStore {
            url,
            client: std::sync::Arc::new(client),
            bounds: Bounds::default(),
            flusher: None,
            known: Default::default(),
            names: Default::default(),
            generation: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// The same store, holding new instances to `bounds`.
    pub fn bounded(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    pub fn url(&self) -> &ClickHouseUrl {
        &self.url
    }

    fn fail(&self, e: ChError) -> Error {
        named(&self.url, e)
    }

    /// Runs a query and decodes its `RowBinary` rows with `row`.
    fn rows<T>(
        &self,
        sql: &str,
        mut row: impl FnMut(&mut rowbinary::RowReader) -> Result<T, ChError>,
    ) -> Result<Vec<T>> {
        let started = std::time::Instant::now();
        let data = self
            .client
            .query(&format!("{sql} FORMAT RowBinary"))
            .map_err(|e| self.fail(e))?;
        tracing::trace!(
            ms = started.elapsed().as_secs_f64() * 1e3,
            bytes = data.len(),
            "{sql}"
        );
        let mut r = rowbinary::RowReader::new(&data);
        let mut out = Vec::new();
        while !r.done() {
            out.push(row(&mut r).map_err(|e| self.fail(e))?);
        }
        Ok(out)
    }

    /// Inserts rows outside ingest's flusher: what evaluation keeps.
    fn insert(&self, table: &str, rows: &rowbinary::RowWriter) -> Result<()> {
        if rows.rows == 0 {
            return Ok(());
        }
        self.client
            .insert(table, &rows.buf)
            .map_err(|e| self.fail(e))
    }

    /// Runs a statement that answers nothing.
    fn exec(&self, sql: &str) -> Result<()> {
        self.client.query(sql).map(|_| ()).map_err(|e| self.fail(e))
    }
}

/// A ClickHouse failure as the analyzer's error, naming the store by its
/// URL (which never holds the password) and the user where it was refused.
fn named(url: &ClickHouseUrl, e: ChError) -> Error {
    let url_text = url.to_string();
    match e {
        ChError::Unreachable(reason) => Error::StoreUnavailable {
            url: url_text,
            reason,
        },
        ChError::Behind => Error::StoreUnavailable {
            url: url_text,
            reason: "more rows are waiting to be inserted than this analyzer holds".into(),
        },
        ChError::Auth => Error::StoreAuth {
            url: url_text,
            user: url.user.clone(),
        },
        ChError::Query(reason) | ChError::Decode(reason) => Error::StoreQuery {
            url: url_text,
            reason,
        },
    }
}

/// 63 bits of SHA-256 over `parts`, each ended by a 0xff byte (which UTF-8
/// never holds): an id every analyzer computes alike. Two things share an
/// id with odds of about n²/2⁶⁴, one in 10⁷ for a million stacks.
pub(crate) fn id63<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> i64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0xffu8]);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_le_bytes(b) >> 1) as i64
}

impl Store for ClickHouseStore {
    fn submit(&self, vb: &ValidBatch, received_ms: i64) -> Result<Receipt> {
        self.write_batch(vb, received_ms)
    }

    fn instances(&self, service: Option<&str>) -> Result<Vec<InstanceInfo>> {
        self.read_instances(service)
    }

    fn segments(&self, service: &str, instance: &str) -> Result<Vec<Segment>> {
        self.read_segments(service, instance)
    }

    fn metric_names(&self, service: &str, instance: Option<&str>) -> Result<Vec<String>> {
        self.read_metric_names(service, instance)
    }

    fn metric_names_of(
        &self,
        service: &str,
        instances: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<String>>> {
        self.read_metric_names_of(service, instances)
    }

    fn all_metric_names(&self) -> Result<Vec<String>> {
        // The coarsest rollups hold a row per series and quarter hour, far
        // fewer than the samples, and expire with them.
        self.rows(
            &format!(
                "SELECT DISTINCT metric FROM {}",
                rollups::table(
                    crate::store::rollup::TIERS[crate::store::rollup::TIERS.len() - 1].res_ms
                )
            ),
            |r| r.string(),
        )
    }

    fn series(&self, sel: &Selector, metric: &str) -> Result<Vec<Point>> {
        self.read_series(sel, metric)
    }

    fn envelope(
        &self,
        sel: &Selector,
        metric: &str,
        bucket_ms: i64,
    ) -> Result<Vec<EnvelopeBucket>> {
        self.read_envelope(sel, metric, bucket_ms)
    }

    fn latest(&self, sel: &Selector, metric: &str) -> Result<Option<Point>> {
        self.read_latest(sel, metric)
    }

    fn envelope_each(
        &self,
        sel: &Selector,
        metrics: &[&str],
        bucket_ms: i64,
    ) -> Result<HashMap<String, Vec<EnvelopeBucket>>> {
        self.read_envelope_each(sel, metrics, bucket_ms)
    }

    fn latest_each(&self, sel: &Selector, metrics: &[&str]) -> Result<HashMap<String, Point>> {
        self.read_latest_each(sel, metrics)
    }

    fn envelopes_of(
        &self,
        sel: &Selector,
        instances: &[&str],
        metrics: &[&str],
        bucket_ms: i64,
    ) -> Result<ByInstance<Vec<EnvelopeBucket>>> {
        self.read_envelopes_of(sel, instances, metrics, bucket_ms)
    }

    fn latest_of(
        &self,
        sel: &Selector,
        instances: &[&str],
        metrics: &[&str],
    ) -> Result<ByInstance<Point>> {
        self.read_latest_of(sel, instances, metrics)
    }

    fn pauses(&self, sel: &Selector) -> Result<Vec<StoredPause>> {
        self.read_pauses(sel)
    }

    fn profiles(&self, sel: &Selector) -> Result<Vec<StoredProfile>> {
        self.read_profiles(sel)
    }

    fn profiles_of(
        &self,
        sel: &Selector,
        instances: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<StoredProfile>>> {
        self.read_profiles_of(sel, instances)
    }

    fn profile_nearest(
        &self,
        service: &str,
        instance: &str,
        at_ms: i64,
    ) -> Result<Option<StoredProfile>> {
        self.read_profile_nearest(service, instance, at_ms)
    }

    fn profiles_nearest(
        &self,
        service: &str,
        instances: &[&str],
        at_ms: i64,
    ) -> Result<Vec<StoredProfile>> {
        self.read_profiles_nearest(service, instances, at_ms)
    }

    fn profile_sums(&self, profile_ids: &[i64]) -> Result<Vec<StackValue>> {
        self.read_profile_sums(profile_ids)
    }

    fn profile_values(&self, profile_id: i64) -> Result<Vec<StackValue>> {
        self.read_profile_values(profile_id)
    }

    fn profile_raw(&self, profile_id: i64) -> Result<Option<Vec<u8>>> {
        self.read_profile_raw(profile_id)
    }

    fn profile_ages(&self, profile_id: i64) -> Result<HashMap<i64, Ages>> {
        self.read_profile_ages(profile_id)
    }

    fn site_series(&self, sel: &Selector, stack_id: i64) -> Result<Vec<SitePoint>> {
        self.read_site_points(sel, Some(stack_id))
    }

    fn site_points(&self, sel: &Selector) -> Result<Vec<SitePoint>> {
        self.read_site_points(sel, None)
    }

    fn symbols(
        &self,
        build_id: &str,
        offsets: &[u64],
    ) -> Result<std::collections::HashMap<u64, Vec<heaptide_wire::pprof::Frame>>> {
        self.read_symbols(build_id, offsets)
    }

    fn keep_symbols(
        &self,
        build_id: &str,
        rows: &[(u64, Vec<heaptide_wire::pprof::Frame>)],
    ) -> Result<()> {
        self.write_symbols(build_id, rows)
    }

    fn stacks(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<Frame>)>> {
        self.read_stacks(ids)
    }

    fn retain(&self, now_ms: i64, policy: &RetentionPolicy) -> Result<RetentionReport> {
        self.apply_retention(now_ms, policy)
    }

    fn settle(&self, now_ms: i64) -> Result<()> {
        self.settle_buckets(now_ms)
    }

    /// A read here is mostly a wait on ClickHouse, which runs many at
    /// once.
    fn reads_per_core(&self) -> usize {
        4
    }

    fn disk_bytes(&self) -> Result<u64> {
        self.measure_disk()
    }

    fn stats(&self) -> Result<StoreStats> {
        self.measure()
    }
}

impl EvaluationState for ClickHouseStore {
    fn keep_findings(
        &self,
        service: &str,
        instance: &str,
        evaluated_ms: i64,
        findings_json: &str,
    ) -> Result<()> {
        self.write_findings(service, instance, evaluated_ms, findings_json)
    }

    fn kept_findings(&self, service: Option<&str>) -> Result<Vec<KeptFindings>> {
        self.read_findings(service)
    }

    fn kept_times(&self) -> Result<std::collections::HashMap<(String, String), i64>> {
        self.read_kept_times()
    }

    fn keep_findings_each(&self, rows: &[KeptFindings]) -> Result<()> {
        self.write_findings_each(rows)
    }

    fn keep_alerts(&self, shard: Shard, alerts: &[KeptAlert]) -> Result<()> {
        self.write_alerts(shard, alerts)
    }

    fn kept_alerts(&self) -> Result<Vec<KeptAlert>> {
        self.read_alerts()
    }

    fn record_transitions(&self, transitions: &[Transition]) -> Result<()> {
        self.write_transitions(transitions)
    }

    fn transitions(&self, service: &str, instance: &str, limit: usize) -> Result<Vec<Transition>> {
        self.read_transitions(service, instance, limit)
    }
}
