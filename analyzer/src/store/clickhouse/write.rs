//! Ingest: each batch becomes rows for every table it touches; one
//! flusher per analyzer gathers the rows of every agent's batch and
//! inserts them as one block per table, because ClickHouse wants a few
//! large inserts, not many small ones. A batch is acknowledged only once
//! the block that holds it is in; a failed block fails every batch in it,
//! and their agents send them again, which the tables' sorting keys fold.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};

use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use super::http::Client;
use super::ids::{profile_id, segment_id, stack_id};
use super::rowbinary::{lit, RowWriter};
use super::{named, ChError, ClickHouseStore, ClickHouseUrl};
use crate::error::{Error, Result};
use crate::ingest::ValidBatch;
use crate::store::*;

/// The shortest time between the starts of two inserts while batches come
/// from more than one sender at a time: batches arriving meanwhile share
/// the next insert. A second, as ClickHouse asks of its writers: each
/// insert also writes a part to every view's table, and inserts of a few
/// hundred rows every 200 ms cost ClickHouse more for their parts than for
/// their rows (docs/benchmarks.md).
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The same while the last insert carried one batch: a lone sender, such
/// as an agent sending its backlog, waits for each insert before its next
/// batch, and would get one a second. A batch after a quiet interval is
/// inserted at once.
const FLUSH_EVERY_ALONE: Duration = Duration::from_millis(200);
/// Rows waiting past this many bytes are inserted without waiting for
/// [`FLUSH_EVERY`] or [`FLUSH_EVERY_ALONE`] to pass.
const FLUSH_BYTES: usize = 8 << 20;
/// Rows waiting past this many bytes refuse new batches (503, retry):
/// backpressure instead of unbounded memory when ClickHouse falls behind.
const MAX_PENDING_BYTES: usize = 128 << 20;
/// How many ids each cache holds before it starts again.
const MAX_KNOWN: usize = 200_000;

/// The tables ingest writes, in the order they are inserted: stacks and
/// segments before what refers to them, profiles last, so a profile is
/// never visible before its stacks.
#[derive(Clone, Copy)]
enum Table {
    Stacks,
    Segments,
    Samples,
    Pauses,
    ProfileRaw,
    ProfileStacks,
    ProfileAges,
    Profiles,
}

const TABLES: [&str; 8] = [
    "stacks",
    "segments",
    "samples",
    "pauses",
    "profile_raw",
    "profile_stacks",
    "profile_ages",
    "profiles",
];

/// Rows for each [`Table`], by its index.
#[derive(Default)]
pub(super) struct Block {
    tables: [RowWriter; 8],
    /// Stacks in `tables` this analyzer had not stored before: known once
    /// the block is in.
    new_stacks: HashSet<i64>,
    /// Segments with samples in buckets that may be settled, and the
    /// oldest such bucket: marked late once their samples are in
    /// (`super::settle`).
    late: HashMap<i64, i64>,
}

impl Block {
    fn bytes(&self) -> usize {
        self.tables.iter().map(|t| t.buf.len()).sum()
    }

    fn append(&mut self, other: Block) {
        for (mine, theirs) in self.tables.iter_mut().zip(other.tables) {
            mine.append(theirs);
        }
        self.new_stacks.extend(other.new_stacks);
        for (seg, from) in other.late {
            let f = self.late.entry(seg).or_insert(from);
            *f = (*f).min(from);
        }
    }

    fn table(&mut self, t: Table) -> &mut RowWriter {
        &mut self.tables[t as usize]
    }
}

/// What this analyzer has seen stored, so that it asks ClickHouse once.
#[derive(Default)]
pub(super) struct Known {
    /// Segment id → its first-seen time.
    segments: HashMap<i64, i64>,
    instances: HashSet<(String, String)>,
    stacks: HashSet<i64>,
}

struct Pending {
    block: Block,
    waiters: Vec<oneshot::Sender<Result<()>>>,
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

/// The flusher: a thread that inserts what ingest left for it.
pub(super) struct Flusher {
    shared: Arc<Shared>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let mut p = lock(&self.shared.pending);
        p.closed = true;
        self.shared.wake.notify_all();
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Flusher {
    pub(super) fn start(
        client: Arc<Client>,
        url: ClickHouseUrl,
        known: Arc<Mutex<Known>>,
    ) -> Flusher {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                block: Block::default(),
                waiters: Vec::new(),
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("heaptide-flusher".into())
            .spawn(move || flush_loop(&s, &client, &url, &known));
        if let Err(e) = spawned {
            // Without its thread every batch would wait forever: refuse them.
            tracing::error!("cannot start the ClickHouse flusher: {e}");
            lock(&shared.pending).closed = true;
        }
        Flusher { shared }
    }

    /// Leaves `block` for the next insert; the receiver says when it is
    /// in.
    fn submit(&self, block: Block) -> Result<oneshot::Receiver<Result<()>>, ChError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&self.shared.pending);
            if p.closed {
                return Err(ChError::Unreachable("the analyzer is stopping".into()));
            }
            if p.block.bytes() + block.bytes() > MAX_PENDING_BYTES {
                return Err(ChError::Behind);
            }
            p.block.append(block);
            p.waiters.push(tx);
            self.shared.wake.notify_all();
        }
        Ok(rx)
    }
}

fn flush_loop(shared: &Shared, client: &Client, url: &ClickHouseUrl, known: &Mutex<Known>) {
    // The first batch need not wait for an interval to pass.
    let now = Instant::now();
    let mut last = now.checked_sub(FLUSH_EVERY).unwrap_or(now);
    let mut every = FLUSH_EVERY_ALONE;
    loop {
        let (block, waiters) = {
            let mut p = lock(&shared.pending);
            while p.waiters.is_empty() && !p.closed {
                p = shared.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            if p.waiters.is_empty() {
                return;
            }
            // Gather more batches until the interval is up or the block
            // is large.
            while last.elapsed() < every && p.block.bytes() < FLUSH_BYTES && !p.closed {
                let left = every.saturating_sub(last.elapsed());
                p = shared
                    .wake
                    .wait_timeout(p, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            (std::mem::take(&mut p.block), std::mem::take(&mut p.waiters))
        };
        last = Instant::now();
        every = if waiters.len() > 1 {
            FLUSH_EVERY
        } else {
            FLUSH_EVERY_ALONE
        };
        let result = insert(client, &block);
        match &result {
            Ok(()) => {
                let mut k = lock(known);
                if k.stacks.len() + block.new_stacks.len() > MAX_KNOWN {
                    k.stacks.clear();
                }
                k.stacks.extend(block.new_stacks);
            }
            Err(e) => tracing::warn!("insert of {} batches failed: {e:?}", waiters.len()),
        }
        for w in waiters {
            let _ = w.send(result.clone().map_err(|e| named(url, e)));
        }
    }
}

fn insert(client: &Client, block: &Block) -> Result<(), ChError> {
    for (name, rows) in TABLES.iter().zip(&block.tables) {
        if rows.rows > 0 {
            client.insert(name, &rows.buf)?;
        }
    }
    // After the samples, and stamped now: a settle that began before this
    // mark may not have seen them, and one that begins after it has.
    if !block.late.is_empty() {
        let now = crate::select::now_ms();
        let mut w = RowWriter::default();
        for (seg, from) in &block.late {
            w.i64(*seg).i64(*from).i64(now);
            w.row();
        }
        client.insert("late", &w.buf)?;
    }
    Ok(())
}

impl ClickHouseStore {
    pub(super) fn write_batch(&self, vb: &ValidBatch, received_ms: i64) -> Result<Receipt> {
        let flusher = self
            .flusher
            .as_ref()
            .ok_or_else(|| Error::invalid("store", "this store was opened read-only"))?;
        let b = &vb.batch;
        let seg = segment_id(
            &b.agent.service,
            &b.agent.instance,
            b.agent.pid,
            b.agent.start_time_ms,
        );
        let (first_seen, new_segment) = self.first_seen(b, seg, received_ms)?;
        let mut block = Block::default();
        segment_row(&mut block, b, seg, first_seen, received_ms);
        for s in &b.samples {
            for (name, v) in &s.metrics {
                let w = block.table(Table::Samples);
                w.i64(seg)
                    .str(name)
                    .u32(0)
                    .i64(s.ts_ms)
                    .f64(*v)
                    .f64(*v)
                    .f64(*v)
                    .u32(1);
                w.row();
            }
        }
        // By the clock settling goes by, whatever time the batch is said to
        // be received at.
        let oldest = b.samples.iter().map(|s| s.ts_ms).min();
        let now = crate::select::now_ms();
        if let Some(from) = oldest.and_then(|o| super::settle::late_from(o, now)) {
            block.late.insert(seg, from);
        }
        for p in &b.pause_events {
            let w = block.table(Table::Pauses);
            w.i64(seg)
                .i64(p.start_ms)
                .str(p.source.as_str())
                .str(&p.name)
                .f64(p.duration_ms);
            w.row();
        }
        for (p, decoded) in b.profiles.iter().zip(&vb.profiles) {
            self.encode_profile(&mut block, seg, p, decoded);
        }
        let stored = flusher.submit(block).map_err(|e| self.fail(e))?;
        let outcome = IngestOutcome {
            samples: b.samples.len(),
            pause_events: b.pause_events.len(),
            profiles: b.profiles.len(),
            new_segment,
        };
        Ok(Receipt::pending(outcome, stored))
    }

    /// When the segment was first seen, and whether this batch is its
    /// first. Asks ClickHouse once per segment, and checks the store's
    /// bounds once per instance this analyzer has not seen.
    fn first_seen(&self, b: &heaptide_wire::Batch, seg: i64, now: i64) -> Result<(i64, bool)> {
        if let Some(t) = lock(&self.known).segments.get(&seg) {
            return Ok((*t, false));
        }
        let key = (b.agent.service.clone(), b.agent.instance.clone());
        if !lock(&self.known).instances.contains(&key) {
            self.check_bounds(&key.0, &key.1)?;
        }
        let stored = self.rows(
            &format!(
                "SELECT min(first_seen_ms) FROM segments WHERE service = {} AND instance = {} AND id = {seg} HAVING count() > 0",
                lit(&key.0),
                lit(&key.1)
            ),
            |r| r.i64(),
        )?;
        let mut known = lock(&self.known);
        if known.segments.len() >= MAX_KNOWN {
            known.segments.clear();
            known.instances.clear();
        }
        known.instances.insert(key);
        let first = stored.first().copied().unwrap_or(now);
        known.segments.insert(seg, first);
        Ok((first, stored.is_empty()))
    }

    /// Refuses a new instance past the bounds. Analyzers check on their
    /// own, so two that add instances at the same moment can pass a bound
    /// by one each.
    fn check_bounds(&self, service: &str, instance: &str) -> Result<()> {
        let counts = self.rows(
            &format!(
                "SELECT uniqExact(instance), countIf(instance = {}) FROM segments WHERE service = {}",
                lit(instance),
                lit(service)
            ),
            |r| Ok((r.u64()?, r.u64()?)),
        )?;
        let (instances, this) = counts.first().copied().unwrap_or((0, 0));
        if this > 0 {
            return Ok(());
        }
        if instances >= self.bounds.max_instances_per_service {
            return Err(Error::Bound {
                what: format!("instances of service {service:?}"),
                limit: self.bounds.max_instances_per_service,
                setting: "max_instances_per_service",
            });
        }
        let services = self.rows(
            &format!(
                "SELECT uniqExact(service), countIf(service = {}) FROM segments",
                lit(service)
            ),
            |r| Ok((r.u64()?, r.u64()?)),
        )?;
        let (services, this) = services.first().copied().unwrap_or((0, 0));
        if this == 0 && services >= self.bounds.max_services {
            return Err(Error::Bound {
                what: "services".into(),
                limit: self.bounds.max_services,
                setting: "max_services",
            });
        }
        Ok(())
    }

    fn encode_profile(
        &self,
        block: &mut Block,
        seg: i64,
        p: &heaptide_wire::EncodedProfile,
        decoded: &crate::ingest::DecodedProfile,
    ) {
        let id = profile_id(seg, p.ts_ms);
        let mut merged: HashMap<i64, [i64; 4]> = HashMap::new();
        let mut stack_ids = Vec::with_capacity(decoded.stacks.len());
        let known = lock(&self.known);
        for s in &decoded.stacks {
            let sid = stack_id(&s.frames);
            // Frames are serialized only for a stack not stored before.
            if !known.stacks.contains(&sid) && block.new_stacks.insert(sid) {
                let json = serde_json::to_string(&s.frames).unwrap_or_else(|_| "[]".into());
                block.table(Table::Stacks).i64(sid).str(&json).row();
            }
            let e = merged.entry(sid).or_default();
            for (sum, v) in e
                .iter_mut()
                .zip([s.bytes, s.objects, s.alloc_bytes, s.alloc_objects])
            {
                *sum = sum.saturating_add(v);
            }
            stack_ids.push(sid);
        }
        drop(known);
        let (total_bytes, total_objects) = merged
            .values()
            .fold((0i64, 0i64), |a, v| (a.0 + v[0], a.1 + v[1]));
        for (sid, [bytes, objects, alloc_bytes, alloc_objects]) in &merged {
            let w = block.table(Table::ProfileStacks);
            w.i64(seg)
                .i64(p.ts_ms)
                .i64(id)
                .i64(*sid)
                .i64(*bytes)
                .i64(*objects)
                .i64(*alloc_bytes)
                .i64(*alloc_objects);
            w.row();
        }
        let mut ages: HashMap<i64, Ages> = HashMap::new();
        for a in &p.ages {
            let Some(&sid) = stack_ids.get(a.sample as usize) else {
                continue;
            };
            let e = ages.entry(sid).or_default();
            for (sum, b) in e.iter_mut().zip(a.bytes) {
                *sum = sum.saturating_add(b);
            }
        }
        for (sid, a) in &ages {
            let w = block.table(Table::ProfileAges);
            w.i64(seg).i64(p.ts_ms).i64(id).i64(*sid).u64s(a);
            w.row();
        }
        block
            .table(Table::ProfileRaw)
            .i64(id)
            .i64(p.ts_ms)
            .bytes(&decoded.raw)
            .row();
        let w = block.table(Table::Profiles);
        w.i64(id).i64(seg).i64(p.ts_ms).u64(p.sample_period_bytes);
        w.i64(total_bytes).i64(total_objects).row();
    }
}

fn segment_row(block: &mut Block, b: &heaptide_wire::Batch, seg: i64, first: i64, now: i64) {
    let labels = serde_json::to_string(&b.agent.labels).unwrap_or_else(|_| "{}".into());
    let stats = serde_json::to_string(&b.agent_stats).unwrap_or_else(|_| "{}".into());
    let w = block.table(Table::Segments);
    w.i64(seg)
        .str(&b.agent.service)
        .str(&b.agent.instance)
        .u32(b.agent.pid);
    w.i64(b.agent.start_time_ms)
        .str(&b.agent.host)
        .str(&b.agent.agent_version);
    w.str(&labels).i64(first).i64(now).u64(b.seq);
    w.u8(b.heap_profiling.enabled as u8)
        .opt_str(b.heap_profiling.reason.as_deref())
        .str(&stats);
    w.row();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_is_inserted_under_its_own_name() {
        let named = [
            (Table::Stacks, "stacks"),
            (Table::Segments, "segments"),
            (Table::Samples, "samples"),
            (Table::Pauses, "pauses"),
            (Table::ProfileRaw, "profile_raw"),
            (Table::ProfileStacks, "profile_stacks"),
            (Table::ProfileAges, "profile_ages"),
            (Table::Profiles, "profiles"),
        ];
        for (t, name) in named {
            assert_eq!(TABLES[t as usize], name);
        }
    }
}
