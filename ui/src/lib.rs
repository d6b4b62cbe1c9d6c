#![doc = include_str!("../README.md")]

pub mod flame;
pub mod format;
pub mod pages;
pub mod service;
pub mod svg;

pub use heaptide_wire::Unit;

/// Rendering failed: inferno could not draw a flamegraph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("flamegraph: {0}")]
    Flamegraph(String),
}

/// How an instance is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Healthy,
    Leaking,
    /// A leak that reaches its limit within a day.
    ExhaustingSoon,
    /// Not heard from lately.
    Stale,
}

/// A pending or firing alert, as the pages show it.
#[derive(Debug, Clone)]
pub struct AlertView {
    pub name: String,
    pub severity: String,
    /// `pending` or `firing`.
    pub state: String,
    pub resource: String,
    pub summary: String,
    /// When it started firing, or began pending.
    pub since_ms: i64,
}

/// One line of an instance's history: a leak that began, changed or
/// ended, or an alert that fired or resolved.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub at_ms: i64,
    /// `finding` or the alert's name.
    pub subject: String,
    pub resource: String,
    pub state: String,
    pub severity: Option<String>,
    pub summary: String,
}

/// What a vertical mark on the charts stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// A new process.
    Restart,
    /// A new process with another `version` label.
    Deploy,
    /// An alert that fired.
    Alert,
}

/// A moment marked on every chart of a page.
#[derive(Debug, Clone)]
pub struct Mark {
    pub at_ms: i64,
    pub kind: MarkKind,
    /// What hovering the mark says: `restart`, `deploy 1.4.2`, the alert.
    pub label: String,
}

/// One row of the overview.
#[derive(Debug, Clone)]
pub struct InstanceSummary {
    pub service: String,
    pub instance: String,
    pub status: Status,
    /// Soonest time to exhaustion among its leaks, and of what.
    pub exhaustion: Option<(String, f64)>,
    pub last_seen_ms: i64,
    pub heap: Vec<(i64, f64)>,
    pub fds: Vec<(i64, f64)>,
    pub alerts: Vec<AlertView>,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone)]
pub struct Chart {
    /// Stable id, used by tests and links: `heap`, `rss`, `fds`, ...
    pub id: String,
    pub title: String,
    pub unit: Unit,
    pub series: Vec<Series>,
    pub limit: Option<(String, f64)>,
    /// The projected path to exhaustion, drawn ahead of now.
    pub projection: Option<Vec<(i64, f64)>>,
    /// Single events, drawn as dots: pauses on the pause timeline.
    pub events: Vec<(i64, f64)>,
}

#[derive(Debug, Clone)]
pub struct PauseView {
    pub start_ms: i64,
    pub duration_ms: f64,
    pub source: heaptide_wire::PauseSource,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct FindingView {
    pub resource: String,
    pub severity: Option<String>,
    /// When the current regime began: the growth the finding judges.
    pub started_ms: Option<i64>,
    /// The function named by the top allocation site.
    pub top_site: Option<String>,
    /// One line: rate, confidence, time to exhaustion.
    pub summary: String,
    /// Each site: its share and rate, then its frames, leaf first, with
    /// the code to look at marked.
    pub sites: Vec<(String, Vec<String>)>,
}

/// Everything the instance page shows.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub service: String,
    pub instance: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Restarts, deploys and alerts, marked on every chart.
    pub marks: Vec<Mark>,
    pub charts: Vec<Chart>,
    pub pauses: Vec<PauseView>,
    pub findings: Vec<FindingView>,
    /// Times of the heap profiles in the window.
    pub profiles: Vec<i64>,
    pub alerts: Vec<AlertView>,
    /// Newest first.
    pub history: Vec<HistoryEntry>,
    /// Processes that memory ended, newest first.
    pub deaths: Vec<DeathView>,
}

/// A process that memory ended: "died: OOM-killed at 1.9 GiB of 2.0 GiB",
/// and when its agent last took a heap profile under memory pressure.
#[derive(Debug, Clone)]
pub struct DeathView {
    pub last_seen_ms: i64,
    pub pid: u32,
    pub summary: String,
    pub pressure_profile_ms: Option<i64>,
}

/// A growing allocation site, over a service's instances.
#[derive(Debug, Clone)]
pub struct SiteRow {
    /// The function it is named by.
    pub name: String,
    /// Its summed growth: `+1.2 GiB/h`.
    pub rate: String,
    /// Instances where it grows.
    pub instances: usize,
}

/// Everything the service page shows.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub service: String,
    /// The label filter in force, `key:value`.
    pub label: Option<String>,
    /// Every `key:value` the service's instances carry.
    pub labels: Vec<String>,
    /// The values of the `version` label, for comparing two.
    pub versions: Vec<String>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub instances: Vec<InstanceSummary>,
    /// Heap and fds, one series per instance, on shared axes.
    pub charts: Vec<Chart>,
    /// Instances left out of the charts, beyond the largest eight.
    pub not_drawn: usize,
    pub sites: Vec<SiteRow>,
}
