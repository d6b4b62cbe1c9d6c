//! How a process ended, when memory ended it: a restart whose cgroup
//! counted a new OOM kill, or a process that stopped without its agent
//! saying so (a SIGKILL, a crash) with its memory near the limit. Each is
//! a `Death` of the earlier segment, with the last heap profile taken
//! under memory pressure before it.

use serde::{Deserialize, Serialize};

use super::Resource;
use crate::error::Result;
use crate::select::Selector;
use crate::store::{Point, Segment, Store};
use heaptide_ui::format;
use heaptide_wire::{metric, Unit};

/// A process that memory ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Death {
    pub service: String,
    pub instance: String,
    pub pid: u32,
    /// Its last sample's time.
    pub last_seen_ms: i64,
    /// `oom_killed` (the cgroup counted an OOM kill across the restart) or
    /// `killed_near_limit` (it stopped without its agent saying so, at
    /// 90% of its memory limit or more).
    pub cause: String,
    /// Its memory at its last sample (the cgroup's use, else RSS), and
    /// the limit.
    pub memory: Option<f64>,
    pub limit: Option<f64>,
    pub limit_source: Option<String>,
    /// When its agent last took a heap profile under memory pressure.
    pub pressure_profile_ms: Option<i64>,
    /// "died: OOM-killed at 1.9 GiB of 2.0 GiB (cgroup memory.max)".
    pub summary: String,
}

/// A segment's end this near its memory limit, unannounced, is a kill.
const NEAR_LIMIT: f64 = 0.9;

/// The metrics a restart is read for.
const READ: [&str; 8] = [
    metric::RSS,
    metric::CGROUP_MEMORY_CURRENT,
    metric::CGROUP_EVENTS_OOM_KILL,
    metric::AGENT_STOPPING,
    metric::AGENT_PRESSURE,
    metric::LIMIT_MEMORY_MAX,
    metric::LIMIT_AS,
    metric::LIMIT_PHYSICAL_MEMORY,
];

/// The deaths among the restarts of the instance `sel` names.
pub fn deaths_of(store: &dyn Store, sel: &Selector) -> Result<Vec<Death>> {
    let (Some(service), Some(instance)) = (sel.service.as_deref(), sel.instance.as_deref()) else {
        return Ok(Vec::new());
    };
    let mut segments = store.segments(service, instance)?;
    segments.retain(|s| s.last_seen_ms >= sel.from_ms && s.first_seen_ms <= sel.to_ms);
    segments.sort_by_key(|s| s.start_time_ms);
    let mut out = Vec::new();
    for pair in segments.windows(2) {
        if let Some(d) = death(store, sel, &pair[0], &pair[1])? {
            out.push(d);
        }
    }
    Ok(out)
}

/// The points of `m` around a restart: the earlier segment's, and the
/// later one's.
struct Around {
    before: Vec<Vec<Point>>,
    after: Vec<Vec<Point>>,
}

impl Around {
    fn at(m: &str) -> usize {
        READ.iter().position(|r| *r == m).unwrap_or(0)
    }

    /// The earlier process's last value of `m`.
    fn last(&self, m: &str) -> Option<f64> {
        self.before[Self::at(m)].last().map(|p| p.value)
    }

    /// The later process's first value of `m`.
    fn first(&self, m: &str) -> Option<f64> {
        self.after[Self::at(m)].first().map(|p| p.value)
    }
}

fn death(
    store: &dyn Store,
    sel: &Selector,
    prev: &Segment,
    next: &Segment,
) -> Result<Option<Death>> {
    // By the processes' own start times, not when their batches arrived:
    // the earlier one's last hour before the later one started, and the
    // later one's first two minutes.
    let window = Selector {
        from_ms: prev.start_time_ms.max(next.start_time_ms - 3_600_000),
        to_ms: next.start_time_ms + 120_000,
        ..sel.clone()
    };
    let mut around = Around {
        before: Vec::new(),
        after: Vec::new(),
    };
    for m in READ {
        let pts = store.series(&window, m)?;
        let (b, a): (Vec<Point>, Vec<Point>) = pts
            .into_iter()
            .filter(|p| p.segment == prev.id || p.segment == next.id)
            .partition(|p| p.segment == prev.id);
        around.before.push(b);
        around.after.push(a);
    }
    let kills_before = around.last(metric::CGROUP_EVENTS_OOM_KILL);
    let kills_after = around.first(metric::CGROUP_EVENTS_OOM_KILL);
    let oom_killed = matches!((kills_before, kills_after), (Some(b), Some(a)) if a > b);
    let stopped = around
        .last(metric::AGENT_STOPPING)
        .is_some_and(|v| v >= 1.0);
    let memory = around
        .last(metric::CGROUP_MEMORY_CURRENT)
        .or(around.last(metric::RSS));
    let (limit, source) = limit(&around);
    let near = matches!((memory, limit), (Some(m), Some(l)) if m >= NEAR_LIMIT * l);
    let cause = match (oom_killed, !stopped && near) {
        (true, _) => "oom_killed",
        (false, true) => "killed_near_limit",
        _ => return Ok(None),
    };
    let pressure_profile_ms = around.before[Around::at(metric::AGENT_PRESSURE)]
        .iter()
        .rev()
        .find(|p| p.value >= 1.0)
        .map(|p| p.ts_ms);
    let at = |v: Option<f64>| v.map_or("?".into(), |v| format::amount(Unit::Bytes, v));
    let how = if oom_killed {
        "OOM-killed"
    } else {
        "killed near its memory limit"
    };
    let summary = format!(
        "died: {how} at {} of {}{}",
        at(memory),
        at(limit),
        source.map(|s| format!(" ({s})")).unwrap_or_default()
    );
    Ok(Some(Death {
        service: sel.service.clone().unwrap_or_default(),
        instance: sel.instance.clone().unwrap_or_default(),
        pid: prev.pid,
        last_seen_ms: around.before[Around::at(metric::RSS)]
            .last()
            .map_or(prev.last_seen_ms, |p| p.ts_ms),
        cause: cause.into(),
        memory,
        limit,
        limit_source: source.map(str::to_owned),
        pressure_profile_ms,
        summary,
    }))
}

/// The memory limit at the earlier segment's end, as the engine takes
/// RSS's: the first present of its candidates, a cgroup limit above
/// physical memory counting as none.
fn limit(around: &Around) -> (Option<f64>, Option<&'static str>) {
    let physical = around.last(metric::LIMIT_PHYSICAL_MEMORY);
    for (m, source) in Resource::Rss.limits().0 {
        if let Some(v) = around.last(m) {
            if *m != metric::LIMIT_PHYSICAL_MEMORY && physical.is_some_and(|p| v >= p) {
                continue;
            }
            return (Some(v), Some(source));
        }
    }
    (None, None)
}
