//! The instance page's charts: each resource with its parts (fds by
//! kind, threads by name, RSS by part), its limit and the projected path
//! of its leak; each pool, queue and the tasks against their capacity;
//! pauses, and memory pressure beside them.

use heaptide_ui::{Chart, Series};
use heaptide_wire::{metric, Unit};

use crate::detect::{Analysis, Resource, Subject};
use crate::error::Result;
use crate::select::Selector;
use crate::store::Store;

use super::views::points;

/// The series of `prefix.*` metrics with any value, largest last value
/// first, at most `keep`.
fn by_prefix(
    store: &dyn Store,
    sel: &Selector,
    names: &[String],
    prefix: &str,
    keep: usize,
) -> Result<Vec<Series>> {
    let mut out: Vec<Series> = Vec::new();
    for n in names
        .iter()
        .filter(|n| n.starts_with(prefix) && n.len() > prefix.len())
        // Kinds and states, not the targets counted under the same root.
        .filter(|n| metric::is_target(prefix) || !metric::is_target(n))
    {
        let s = Series {
            name: n[prefix.len()..].to_owned(),
            points: points(store, sel, n)?,
        };
        if s.points.iter().any(|p| p.1 > 0.0) {
            out.push(s);
        }
    }
    let last = |s: &Series| s.points.last().map_or(0.0, |p| p.1);
    out.sort_by(|a, b| last(b).total_cmp(&last(a)));
    out.truncate(keep);
    Ok(out)
}

/// What the charts of one page share: the store, the window, the
/// instance's metric names and the engine's findings.
struct ChartSource<'a> {
    store: &'a dyn Store,
    sel: &'a Selector,
    names: Vec<String>,
    analysis: &'a Analysis,
}

impl ChartSource<'_> {
    fn series(&self, label: &str, m: &str) -> Result<Series> {
        Ok(Series {
            name: label.to_owned(),
            points: points(self.store, self.sel, m)?,
        })
    }

    /// `total` of `m`, then its `keep` largest `prefix.*` parts.
    fn with_parts(&self, m: &str, prefix: &str, keep: usize) -> Result<Vec<Series>> {
        let mut out = vec![self.series("total", m)?];
        out.extend(by_prefix(self.store, self.sel, &self.names, prefix, keep)?);
        Ok(out)
    }

    /// A chart of `r`, with its limit (heap has none of its own) and the
    /// projected path of its leak.
    fn chart(&self, id: &str, title: &str, series: Vec<Series>, r: Option<Resource>) -> Chart {
        let finding = r.and_then(|r| self.analysis.findings.iter().find(|f| f.resource == r));
        Chart {
            id: id.into(),
            title: title.into(),
            unit: r.map_or(Unit::Millis, Resource::unit),
            series,
            limit: finding
                .filter(|f| f.resource != Resource::Heap)
                .and_then(|f| Some((format!("limit ({})", f.limit_source.as_deref()?), f.limit?))),
            projection: finding.and_then(|f| f.projection(self.sel.to_ms, self.sel.span_ms() / 4)),
            events: Vec::new(),
        }
    }

    /// RSS, then its parts stacked: each line is the running total of
    /// the parts up to it (`heap`, `+ fragmentation`, ...), so the gaps
    /// between lines are the parts, and the last meets RSS. Parts whose
    /// samples do not line up (an older agent's, or downsampled apart) are
    /// drawn as they are instead.
    fn rss_stacked(&self) -> Result<Vec<Series>> {
        let mut out = vec![self.series("rss", metric::RSS)?];
        let mut total: Vec<(i64, f64)> = Vec::new();
        for part in metric::RSS_PARTS {
            let pts = points(self.store, self.sel, part)?;
            if pts.is_empty() {
                continue;
            }
            let name = part[metric::RSS_PART_PREFIX.len()..].replace('_', " ");
            let aligned =
                total.len() == pts.len() && total.iter().zip(&pts).all(|(a, b)| a.0 == b.0);
            if total.is_empty() {
                total = pts;
                out.push(Series {
                    name,
                    points: total.clone(),
                });
            } else if aligned {
                total.iter_mut().zip(&pts).for_each(|(t, p)| t.1 += p.1);
                out.push(Series {
                    name: format!("+ {name}"),
                    points: total.clone(),
                });
            } else {
                return self.with_parts(metric::RSS, metric::RSS_PART_PREFIX, 7);
            }
        }
        Ok(out)
    }

    /// Memory pressure (PSI) beside the pauses, when the agent reads it.
    fn pressure_chart(&self) -> Result<Option<Chart>> {
        if !self.names.iter().any(|n| n == metric::PRESSURE_MEMORY_SOME) {
            return Ok(None);
        }
        Ok(Some(Chart {
            id: "pressure".into(),
            title: "memory pressure: share of time waiting on memory (PSI, avg10)".into(),
            unit: Unit::Percent,
            series: vec![
                self.series("some", metric::PRESSURE_MEMORY_SOME)?,
                self.series("full", metric::PRESSURE_MEMORY_FULL)?,
            ],
            limit: None,
            projection: None,
            events: Vec::new(),
        }))
    }

    /// A pool, queue or runtime's tasks against its capacity (an
    /// unbounded queue and the tasks have none), with a pool's waiters.
    fn gauge_chart(&self, s: &Subject) -> Result<Chart> {
        let mut series = vec![self.series(s.resource.unit().as_str(), &s.metric)?];
        if s.resource == Resource::Pool {
            if let Some(w) = s.sibling(metric::POOL_WAITING) {
                series.push(self.series("waiting", &w)?);
            }
        }
        let capacity = match s.sibling(metric::CAPACITY) {
            Some(c) => points(self.store, self.sel, &c)?.last().map(|p| p.1),
            None => None,
        };
        let finding = self.analysis.findings.iter().find(|f| f.metric == s.metric);
        Ok(Chart {
            id: s.metric.replace('.', "-"),
            title: match (capacity, s.resource) {
                (Some(_), _) => format!("{}, against its capacity", s.label()),
                (None, Resource::Tasks) => "tokio tasks alive".to_owned(),
                (None, _) => format!("{}, unbounded", s.label()),
            },
            unit: s.resource.unit(),
            series,
            limit: capacity.map(|c| ("capacity".to_owned(), c)),
            projection: finding.and_then(|f| f.projection(self.sel.to_ms, self.sel.span_ms() / 4)),
            events: Vec::new(),
        })
    }
}

pub(super) fn charts(
    store: &dyn Store,
    sel: &Selector,
    analysis: &Analysis,
    pauses: &[crate::store::StoredPause],
) -> Result<Vec<Chart>> {
    let service = sel.service.as_deref().unwrap_or_default();
    let names = store.metric_names(service, sel.instance.as_deref())?;
    let c = ChartSource {
        store,
        sel,
        names,
        analysis,
    };
    let heap = vec![
        c.series("allocated", metric::HEAP_ALLOCATED)?,
        c.series("active", metric::HEAP_ACTIVE)?,
        c.series("resident", metric::HEAP_RESIDENT)?,
    ];
    let sockets = by_prefix(store, sel, &c.names, metric::TCP_STATE_PREFIX, 6)?;
    let mut pause = c.chart(
        "pauses",
        "pauses: p99 and max per interval, events as dots",
        vec![
            c.series("p99", metric::PAUSE_P99_MS)?,
            c.series("max", metric::PAUSE_MAX_MS)?,
        ],
        None,
    );
    pause.events = pauses.iter().map(|p| (p.start_ms, p.duration_ms)).collect();
    let mut sockets = c.chart(
        "sockets",
        "TCP sockets by state",
        sockets,
        Some(Resource::Sockets),
    );
    // Sockets are judged, but their chart shows states, not a limit.
    (sockets.limit, sockets.projection) = (None, None);
    [
        c.chart("heap", "heap (jemalloc)", heap, Some(Resource::Heap)),
        c.chart(
            "rss",
            "resident set size, and its parts stacked",
            c.rss_stacked()?,
            Some(Resource::Rss),
        ),
        c.chart(
            "fds",
            "file descriptors by kind",
            c.with_parts(metric::FDS, metric::FDS_KIND_PREFIX, 5)?,
            Some(Resource::Fds),
        ),
        c.chart(
            "threads",
            "threads by name",
            c.with_parts(metric::THREADS, metric::THREADS_NAME_PREFIX, 5)?,
            Some(Resource::Threads),
        ),
        sockets,
    ]
    .into_iter()
    .map(Ok)
    .chain(
        Subject::gauges_among(&c.names)
            .iter()
            .map(|s| c.gauge_chart(s)),
    )
    .chain([Ok(pause)])
    .chain(c.pressure_chart().transpose())
    .collect()
}
