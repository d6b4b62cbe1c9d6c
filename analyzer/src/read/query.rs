//! Read-side logic shared by the HTTP API, the CLI and the dashboards:
//! services, pauses, folded stacks, pprof downloads and profile diffs.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::select::Selector;
use crate::store::{Store, StoredProfile};

/// An instance not heard from for this long is `stale`.
pub const STALE_AFTER_MS: i64 = 120_000;

#[derive(Debug, Serialize)]
pub struct ServiceSummary {
    pub service: String,
    pub instances: usize,
    pub up: usize,
    pub last_seen_ms: i64,
}

pub fn services(store: &dyn Store, now: i64) -> Result<Vec<ServiceSummary>> {
    let mut by: Vec<ServiceSummary> = Vec::new();
    for i in store.instances(None)? {
        let up = usize::from(now - i.last_seen_ms < STALE_AFTER_MS);
        match by.last_mut() {
            Some(s) if s.service == i.service => {
                s.instances += 1;
                s.up += up;
                s.last_seen_ms = s.last_seen_ms.max(i.last_seen_ms);
            }
            _ => by.push(ServiceSummary {
                service: i.service,
                instances: 1,
                up,
                last_seen_ms: i.last_seen_ms,
            }),
        }
    }
    Ok(by)
}

pub fn pauses(store: &dyn Store, sel: &Selector) -> Result<serde_json::Value> {
    let events = store.pauses(sel)?;
    let mut histograms = serde_json::Map::new();
    for m in [
        heaptide_wire::metric::PAUSE_P50_MS,
        heaptide_wire::metric::PAUSE_P99_MS,
        heaptide_wire::metric::PAUSE_P999_MS,
        heaptide_wire::metric::PAUSE_MAX_MS,
    ] {
        histograms.insert(m.to_owned(), json!(store.series(sel, m)?));
    }
    Ok(json!({ "events": events, "histograms": histograms }))
}

pub enum Rendered {
    Json(serde_json::Value),
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, Copy)]
pub enum Value {
    Bytes,
    Objects,
    /// Live bytes that have lived at least this many seconds, from the
    /// ages agents track; stacks without ages count nothing.
    BytesOlderThan(u64),
    /// Bytes allocated, freed or not, over the profiles' intervals.
    AllocBytes,
    /// Objects allocated over the profiles' intervals.
    AllocObjects,
}

/// Folded stacks (`root;...;leaf value`), as inferno and flamegraph.pl read.
pub fn folded(store: &dyn Store, profile_id: i64, value: Value) -> Result<String> {
    folded_sum(store, &[profile_id], value, 1.0)
}

/// The folded stacks of several profiles added up (stacks are shared, so
/// the same stack adds), each value times `scale`: 1 for a sum, 1/n for
/// the mean of n instances.
pub fn folded_sum(
    store: &dyn Store,
    profile_ids: &[i64],
    value: Value,
    scale: f64,
) -> Result<String> {
    let mut sums: HashMap<i64, i64> = HashMap::new();
    if let Value::BytesOlderThan(secs) = value {
        for id in profile_ids {
            for (stack, ages) in store.profile_ages(*id)? {
                *sums.entry(stack).or_default() += bytes_older_than(&ages, secs) as i64;
            }
        }
    } else {
        for v in store.profile_sums(profile_ids)? {
            let n = match value {
                Value::Objects => v.objects,
                Value::AllocBytes => v.alloc_bytes,
                Value::AllocObjects => v.alloc_objects,
                Value::Bytes | Value::BytesOlderThan(_) => v.bytes,
            };
            *sums.entry(v.stack_id).or_default() += n;
        }
    }
    let ids: Vec<i64> = sums.keys().copied().collect();
    let frames: HashMap<i64, Vec<heaptide_wire::pprof::Frame>> =
        store.stacks(&ids)?.into_iter().collect();
    let mut lines: Vec<(String, i64)> = sums
        .iter()
        .filter_map(|(id, n)| {
            let n = (*n as f64 * scale).round() as i64;
            (n > 0).then(|| Some((folded_stack(frames.get(id)?), n)))?
        })
        .collect();
    lines.sort();
    let mut out = String::new();
    for (stack, n) in lines {
        out.push_str(&stack);
        out.push(' ');
        out.push_str(&n.to_string());
        out.push('\n');
    }
    Ok(out)
}

/// The bytes of `ages` in buckets that begin at or after `secs`: memory
/// that has certainly lived that long.
pub fn bytes_older_than(ages: &crate::store::Ages, secs: u64) -> u64 {
    let edges = heaptide_wire::AGE_BUCKETS_SECS;
    ages.iter()
        .enumerate()
        .filter(|(i, _)| *i > 0 && edges[i - 1] >= secs)
        .map(|(_, b)| *b)
        .sum()
}

/// One folded line's stack part: root first, `;`-separated, with the
/// separators that would break the format replaced.
pub fn folded_stack(frames: &[heaptide_wire::pprof::Frame]) -> String {
    let names: Vec<String> = frames
        .iter()
        .rev()
        .map(|f| f.function.replace([';', '\n'], "_"))
        .collect();
    names.join(";").replace(' ', "\u{a0}")
}

pub fn profile_json(store: &dyn Store, info: &StoredProfile) -> Result<serde_json::Value> {
    let mut values = store.profile_values(info.id)?;
    values.sort_by_key(|v| std::cmp::Reverse(v.bytes));
    values.truncate(500);
    let ids: Vec<i64> = values.iter().map(|v| v.stack_id).collect();
    let frames: HashMap<i64, _> = store.stacks(&ids)?.into_iter().collect();
    let stacks: Vec<_> = values
        .iter()
        .map(|v| json!({ "stack_id": v.stack_id, "bytes": v.bytes, "objects": v.objects, "frames": frames.get(&v.stack_id) }))
        .collect();
    Ok(json!({ "profile": info, "stacks": stacks }))
}

/// The profile as pprof: the bytes as received while they are kept, else
/// rebuilt from the stored stacks, which hold the same names, lines and
/// values.
pub fn pprof_bytes(store: &dyn Store, info: &StoredProfile) -> Result<Vec<u8>> {
    if let Some(raw) = store.profile_raw(info.id)? {
        return Ok(raw);
    }
    let values = store.profile_values(info.id)?;
    let ids: Vec<i64> = values.iter().map(|v| v.stack_id).collect();
    let frames: HashMap<i64, _> = store.stacks(&ids)?.into_iter().collect();
    let stacks: Vec<heaptide_wire::pprof::ProfileSample> = values
        .iter()
        .filter_map(|v| {
            Some(heaptide_wire::pprof::ProfileSample {
                frames: frames.get(&v.stack_id)?.clone(),
                objects: v.objects,
                bytes: v.bytes,
                alloc_objects: v.alloc_objects,
                alloc_bytes: v.alloc_bytes,
            })
        })
        .collect();
    let profile = heaptide_wire::pprof::build_heap_profile(
        &stacks,
        info.sample_period_bytes as i64,
        info.ts_ms.saturating_mul(1_000_000),
    );
    Ok(heaptide_wire::pprof::encode_gzip(&profile))
}

#[derive(Debug, Serialize)]
pub struct StackDelta {
    pub stack_id: i64,
    pub frames: Vec<heaptide_wire::pprof::Frame>,
    pub from_bytes: i64,
    pub to_bytes: i64,
    pub delta_bytes: i64,
    pub from_objects: i64,
    pub to_objects: i64,
    pub delta_objects: i64,
}

#[derive(Debug, Serialize)]
pub struct HeapDiff {
    pub from: StoredProfile,
    pub to: StoredProfile,
    /// Every stack present in either profile, largest growth first.
    pub stacks: Vec<StackDelta>,
}

/// Per-stack difference between the profiles nearest `from_ms` and `to_ms`.
pub fn diff(
    store: &dyn Store,
    service: &str,
    instance: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<HeapDiff> {
    let nearest = |t| {
        store
            .profile_nearest(service, instance, t)?
            .ok_or_else(|| Error::NotFound(format!("heap profile of {service}/{instance}")))
    };
    let (a, b) = (nearest(from_ms)?, nearest(to_ms)?);
    let mut by: HashMap<i64, [i64; 4]> = HashMap::new();
    for v in store.profile_values(a.id)? {
        let e = by.entry(v.stack_id).or_default();
        e[0] = v.bytes;
        e[2] = v.objects;
    }
    for v in store.profile_values(b.id)? {
        let e = by.entry(v.stack_id).or_default();
        e[1] = v.bytes;
        e[3] = v.objects;
    }
    let ids: Vec<i64> = by.keys().copied().collect();
    let frames: HashMap<i64, _> = store.stacks(&ids)?.into_iter().collect();
    let mut stacks: Vec<StackDelta> = by
        .into_iter()
        .map(|(id, [fb, tb, fo, to])| StackDelta {
            stack_id: id,
            frames: frames.get(&id).cloned().unwrap_or_default(),
            from_bytes: fb,
            to_bytes: tb,
            delta_bytes: tb - fb,
            from_objects: fo,
            to_objects: to,
            delta_objects: to - fo,
        })
        .collect();
    stacks.sort_by(|x, y| {
        y.delta_bytes
            .cmp(&x.delta_bytes)
            .then(x.stack_id.cmp(&y.stack_id))
    });
    Ok(HeapDiff {
        from: a,
        to: b,
        stacks,
    })
}
