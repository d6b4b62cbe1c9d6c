//! What the engine reports: a finding per resource of each instance, with
//! the allocation sites that explain heap growth.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{LeakVerdict, Resource};
use heaptide_wire::Unit;

/// A frame of a named site.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Site {
    pub stack_id: i64,
    /// Function names, leaf first.
    pub frames: Vec<String>,
    /// Index in `frames` of the first frame outside the allocator and the
    /// standard library: the code to look at.
    pub app_frame: Option<usize>,
    /// Where that frame is, `file:line`, when debug info said.
    pub app_location: Option<String>,
    pub slope_per_hour: f64,
    pub slope_ci: [f64; 2],
    pub share: f64,
    pub current_bytes: f64,
    /// Live bytes by age in the latest profile
    /// ([`heaptide_wire::AGE_BUCKETS_SECS`]), when the agent tracked them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ages: Option<crate::store::Ages>,
    /// The share of those bytes older than half the window judged: near 0
    /// for memory that churns, about half or more for memory that is
    /// never freed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_share: Option<f64>,
}

impl Site {
    /// The function a site is named by: its first frame outside the
    /// runtime.
    pub fn name(&self) -> &str {
        self.app_frame
            .and_then(|i| self.frames.get(i))
            .or(self.frames.first())
            .map_or("?", String::as_str)
    }
}

/// How urgent a leak is, from its time to exhaustion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Exhausted within a day.
    Critical,
    /// Exhausted within a week.
    Warning,
    /// Significant growth that will not exhaust within a week, or has no
    /// known limit.
    Info,
}

impl Severity {
    pub const CRITICAL_WITHIN_SECONDS: f64 = 86_400.0;
    pub const WARNING_WITHIN_SECONDS: f64 = 7.0 * 86_400.0;

    /// The severity of a leak that runs out in `tte_seconds`, if known.
    pub fn of(tte_seconds: Option<f64>) -> Severity {
        match tte_seconds {
            Some(t) if t < Self::CRITICAL_WITHIN_SECONDS => Severity::Critical,
            Some(t) if t < Self::WARNING_WITHIN_SECONDS => Severity::Warning,
            _ => Severity::Info,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// The judgement of one resource of one instance, as `leaks` and `predict`
/// print it (`docs/cli.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub service: String,
    pub instance: String,
    pub resource: Resource,
    pub metric: String,
    pub unit: Unit,
    pub verdict: LeakVerdict,
    /// For leaks: how urgent, from the time to exhaustion.
    pub severity: Option<Severity>,
    pub reason: String,
    pub slope_per_hour: Option<f64>,
    pub slope_ci: Option<[f64; 2]>,
    pub confidence: Option<f64>,
    pub started_ms: Option<i64>,
    pub current: Option<f64>,
    pub limit: Option<f64>,
    pub limit_source: Option<String>,
    pub time_to_exhaustion_seconds: Option<f64>,
    pub time_to_exhaustion_bounds_seconds: Option<[f64; 2]>,
    /// What grows inside the resource: `{"fd_kind": "file"}` or `{"tcp_state": "close_wait"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<HashMap<String, String>>,
    pub instances_growing: usize,
    pub instances: usize,
    pub sites: Vec<Site>,
    /// The same growth seen as another resource, merged into this
    /// finding: `sockets (tcp state established)` beside fds of sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub also_seen_as: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Analysis {
    pub from_ms: i64,
    pub to_ms: i64,
    /// Every resource of every instance, worst first.
    pub findings: Vec<Finding>,
    /// Processes that memory ended in the window: OOM-killed, or killed
    /// near their limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deaths: Vec<super::Death>,
}

impl Analysis {
    /// Only the leaks: what `analyzer leaks` reports.
    pub fn leaks(mut self) -> Analysis {
        self.findings.retain(|f| f.verdict.alarms());
        self
    }

    /// Marks the leaks that would exhaust their resource only beyond
    /// `horizon_ms`: what `predict` reports, from the CLI and the API alike.
    pub fn within_horizon(mut self, horizon_ms: i64) -> Analysis {
        let horizon =
            humantime::format_duration(std::time::Duration::from_millis(horizon_ms.max(0) as u64));
        for f in &mut self.findings {
            if f.exhausts_beyond(horizon_ms) {
                f.reason = format!("{}; exhaustion beyond the {horizon} horizon", f.reason);
            }
        }
        self
    }
}

impl Finding {
    /// The projected path of a leak: from the current value at `now_ms`
    /// along the fitted rate, until the limit or `ahead_ms` later.
    pub fn projection(&self, now_ms: i64, ahead_ms: i64) -> Option<Vec<(i64, f64)>> {
        if self.verdict != LeakVerdict::Leak {
            return None;
        }
        let (now_v, slope) = (self.current?, self.slope_per_hour?);
        let until = self
            .time_to_exhaustion_seconds
            .map_or(ahead_ms, |s| ((s * 1000.0) as i64).min(ahead_ms));
        Some(vec![
            (now_ms, now_v),
            (
                now_ms + until,
                now_v + slope * until as f64 / super::MS_PER_HOUR,
            ),
        ])
    }

    /// What it is about, as alerts and pages name it: `fds`, or for a
    /// pool or queue, `pool db`.
    pub fn label(&self) -> String {
        let name = self
            .detail
            .as_ref()
            .filter(|_| self.resource.is_gauge())
            .and_then(|d| d.get(self.resource.name()));
        match name {
            Some(n) => format!("{} {n}", self.resource.name()),
            None => self.resource.name().to_owned(),
        }
    }

    /// A leak whose time to exhaustion is known and longer than `horizon_ms`.
    pub fn exhausts_beyond(&self, horizon_ms: i64) -> bool {
        self.time_to_exhaustion_seconds
            .is_some_and(|t| t * 1000.0 > horizon_ms as f64)
    }
}
