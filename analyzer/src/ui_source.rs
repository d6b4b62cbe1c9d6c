//! The UI's data, from the store and the leak engine.

use std::sync::Arc;

use heaptide_ui::{
    Chart, DataSource, FindingView, InstanceSummary, InstanceView, PauseView, Series, Status, Unit,
};
use heaptide_wire::metric;

use crate::detect::{self, Verdict};
use crate::query;
use crate::store::{Selector, Store};

pub struct UiSource {
    pub store: Arc<dyn Store>,
}

fn err(e: crate::Error) -> String {
    e.to_string()
}

/// A leak reaching its limit within this long is "exhausting soon".
const SOON_SECS: f64 = 86_400.0;

impl UiSource {
    fn points(&self, sel: &Selector, m: &str) -> Result<Vec<(i64, f64)>, String> {
        Ok(self
            .store
            .series(sel, m)
            .map_err(err)?
            .into_iter()
            .map(|p| (p.ts_ms, p.value))
            .collect())
    }

    fn analysis(
        &self,
        service: &str,
        instance: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<detect::Analysis, String> {
        let q = detect::Query {
            service: Some(service.into()),
            instance: Some(instance.into()),
            from_ms,
            to_ms,
        };
        detect::analyze(&*self.store, &q, &detect::Options::default()).map_err(err)
    }
}

impl DataSource for UiSource {
    fn now_ms(&self) -> i64 {
        query::now_ms()
    }

    fn overview(&self) -> Result<Vec<InstanceSummary>, String> {
        let now = query::now_ms();
        let mut rows = Vec::new();
        for i in self.store.instances(None).map_err(err)? {
            let a = self.analysis(&i.service, &i.instance, now - 24 * 3_600_000, now)?;
            let leaks: Vec<_> = a
                .findings
                .iter()
                .filter(|f| f.verdict == Verdict::Leak)
                .collect();
            let exhaustion = leaks
                .iter()
                .filter_map(|f| Some((f.resource.name().to_owned(), f.time_to_exhaustion_seconds?)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            let status = if now - i.last_seen_ms > query::STALE_AFTER_MS {
                Status::Stale
            } else if exhaustion.as_ref().is_some_and(|e| e.1 < SOON_SECS) {
                Status::ExhaustingSoon
            } else if !leaks.is_empty() {
                Status::Leaking
            } else {
                Status::Healthy
            };
            let sel = Selector {
                service: i.service.clone(),
                instance: Some(i.instance.clone()),
                from_ms: now - 3_600_000,
                to_ms: now,
            };
            rows.push(InstanceSummary {
                heap: self.points(&sel, metric::HEAP_ALLOCATED)?,
                fds: self.points(&sel, metric::FDS)?,
                service: i.service,
                instance: i.instance,
                status,
                exhaustion,
                last_seen_ms: i.last_seen_ms,
            });
        }
        Ok(rows)
    }

    fn instance(
        &self,
        service: &str,
        instance: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<InstanceView>, String> {
        let segments = self.store.segments(service, instance).map_err(err)?;
        if segments.is_empty() {
            return Ok(None);
        }
        let sel = Selector {
            service: service.into(),
            instance: Some(instance.into()),
            from_ms,
            to_ms,
        };
        let names = self
            .store
            .metric_names(service, Some(instance))
            .map_err(err)?;
        let analysis = self.analysis(service, instance, from_ms, to_ms)?;
        let series = |label: &str, m: &str| -> Result<Series, String> {
            Ok(Series {
                name: label.to_owned(),
                points: self.points(&sel, m)?,
            })
        };
        let by_prefix = |prefix: &str, keep: usize| -> Result<Vec<Series>, String> {
            let mut out: Vec<Series> = Vec::new();
            for n in names
                .iter()
                .filter(|n| n.starts_with(prefix) && n.len() > prefix.len())
            {
                let s = series(&n[prefix.len()..], n)?;
                if s.points.iter().any(|p| p.1 > 0.0) {
                    out.push(s);
                }
            }
            out.sort_by(|a, b| {
                let last = |s: &Series| s.points.last().map_or(0.0, |p| p.1);
                last(b).total_cmp(&last(a))
            });
            out.truncate(keep);
            Ok(out)
        };
        let finding = |r: detect::Resource| analysis.findings.iter().find(|f| f.resource == r);
        let limit = |r: detect::Resource| {
            finding(r).and_then(|f| Some((format!("limit ({})", f.limit_source?), f.limit?)))
        };
        // The projected path: from the current value along the fitted rate,
        // until the limit or the edge of the chart.
        let projection = |r: detect::Resource| -> Option<Vec<(i64, f64)>> {
            let f = finding(r).filter(|f| f.verdict == Verdict::Leak)?;
            let (now_v, slope) = (f.current?, f.slope_per_hour?);
            let ahead = (to_ms - from_ms) / 4;
            let until = f
                .time_to_exhaustion_seconds
                .map_or(ahead, |s| ((s * 1000.0) as i64).min(ahead));
            Some(vec![
                (to_ms, now_v),
                (to_ms + until, now_v + slope * until as f64 / 3_600_000.0),
            ])
        };
        let mut fds = vec![series("total", metric::FDS)?];
        fds.extend(by_prefix(metric::FDS_KIND_PREFIX, 5)?);
        let mut threads = vec![series("total", metric::THREADS)?];
        threads.extend(by_prefix(metric::THREADS_NAME_PREFIX, 5)?);
        let pause_events = self.store.pauses(&sel).map_err(err)?;
        let charts = vec![
            Chart {
                id: "heap".into(),
                title: "heap (jemalloc)".into(),
                unit: Unit::Bytes,
                series: vec![
                    series("allocated", metric::HEAP_ALLOCATED)?,
                    series("active", metric::HEAP_ACTIVE)?,
                    series("resident", metric::HEAP_RESIDENT)?,
                ],
                limit: None,
                projection: projection(detect::Resource::Heap),
                events: Vec::new(),
            },
            Chart {
                id: "rss".into(),
                title: "resident set size".into(),
                unit: Unit::Bytes,
                series: vec![series("rss", metric::RSS)?],
                limit: limit(detect::Resource::Rss),
                projection: projection(detect::Resource::Rss),
                events: Vec::new(),
            },
            Chart {
                id: "fds".into(),
                title: "file descriptors by kind".into(),
                unit: Unit::Count,
                series: fds,
                limit: limit(detect::Resource::Fds),
                projection: projection(detect::Resource::Fds),
                events: Vec::new(),
            },
            Chart {
                id: "threads".into(),
                title: "threads by name".into(),
                unit: Unit::Count,
                series: threads,
                limit: limit(detect::Resource::Threads),
                projection: projection(detect::Resource::Threads),
                events: Vec::new(),
            },
            Chart {
                id: "sockets".into(),
                title: "TCP sockets by state".into(),
                unit: Unit::Count,
                series: by_prefix(metric::TCP_STATE_PREFIX, 6)?,
                limit: None,
                projection: None,
                events: Vec::new(),
            },
            Chart {
                id: "pauses".into(),
                title: "pauses: p99 and max per interval, events as dots".into(),
                unit: Unit::Millis,
                series: vec![
                    series("p99", metric::PAUSE_P99_MS)?,
                    series("max", metric::PAUSE_MAX_MS)?,
                ],
                limit: None,
                projection: None,
                events: pause_events
                    .iter()
                    .map(|p| (p.start_ms, p.duration_ms))
                    .collect(),
            },
        ];
        let restarts = segments.iter().skip(1).map(|s| s.start_time_ms).collect();
        let pauses = pause_events
            .into_iter()
            .map(|p| PauseView {
                start_ms: p.start_ms,
                duration_ms: p.duration_ms,
                source: p.source,
                name: p.name,
            })
            .collect();
        let findings = analysis
            .findings
            .iter()
            .filter(|f| f.verdict == Verdict::Leak)
            .map(|f| {
                let rate = f
                    .slope_per_hour
                    .map(|s| crate::report::rate(f, s))
                    .unwrap_or_default();
                let tte = f
                    .time_to_exhaustion_seconds
                    .map(|t| format!(", exhausted in {}", crate::report::duration(t)))
                    .unwrap_or_default();
                let detail = crate::report::detail(f);
                FindingView {
                    resource: f.resource.name().to_owned(),
                    summary: format!(
                        "{rate}{detail}, confidence {:.1}%{tte}",
                        f.confidence.unwrap_or(0.0) * 100.0
                    ),
                    sites: f
                        .sites
                        .iter()
                        .map(|s| {
                            let head = format!(
                                "{:.0}% of the growth, {}",
                                s.share * 100.0,
                                crate::report::rate(f, s.slope_per_hour)
                            );
                            let frames = s
                                .frames
                                .iter()
                                .enumerate()
                                .skip(s.app_frame.unwrap_or(0))
                                .take(6)
                                .map(|(k, name)| {
                                    if Some(k) == s.app_frame {
                                        format!(
                                            "{name}   <== {}",
                                            s.app_location.clone().unwrap_or_default()
                                        )
                                    } else {
                                        name.clone()
                                    }
                                })
                                .collect();
                            (head, frames)
                        })
                        .collect(),
                }
            })
            .collect();
        let profiles = self
            .store
            .profiles(&sel)
            .map_err(err)?
            .into_iter()
            .map(|p| p.ts_ms)
            .collect();
        Ok(Some(InstanceView {
            service: service.into(),
            instance: instance.into(),
            from_ms,
            to_ms,
            restarts,
            charts,
            pauses,
            findings,
            profiles,
        }))
    }

    fn folded(
        &self,
        service: &str,
        instance: &str,
        at_ms: i64,
        objects: bool,
    ) -> Result<Option<(i64, String)>, String> {
        let Some(info) = self
            .store
            .profile_nearest(service, instance, at_ms)
            .map_err(err)?
        else {
            return Ok(None);
        };
        let value = if objects {
            query::Value::Objects
        } else {
            query::Value::Bytes
        };
        Ok(Some((
            info.ts_ms,
            query::folded(&*self.store, info.id, value).map_err(err)?,
        )))
    }
}
