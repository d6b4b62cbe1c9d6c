//! `analyzer check`: gates a soak run on growth budgets, statistically.
//!
//! A growth budget **fails** only when the lower end of the growth's 95%
//! interval is above it, **passes** when the upper end is below it, and is
//! otherwise **inconclusive**, which the budget file turns into a pass or a
//! fail, with an estimate of how much longer a run would have decided.

use std::collections::HashMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::budget::{Budget, BudgetFile, Inconclusive};
use crate::detect::stats::{envelope, trend, Pt, Summary};
use crate::detect::{self, Options};
use crate::error::{Error, Result};
use crate::store::{Selector, Store};
use heaptide_wire::metric;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// One budget line, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// The budget key, e.g. `heap_growth_per_hour`.
    pub name: String,
    pub verdict: Verdict,
    /// What the budget file's `inconclusive` made of an inconclusive verdict.
    pub passed: bool,
    pub unit: &'static str,
    pub budget: f64,
    /// The measured value: a rate for growth, the peak for ceilings.
    pub measured: f64,
    /// The 95% interval of a rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    pub message: String,
    /// For an inconclusive rate: how much longer a run would likely decide.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more_seconds_needed: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceResult {
    pub service: String,
    pub instance: String,
    pub items: Vec<Item>,
    /// For a failing heap budget: the sites that grow.
    pub sites: Vec<detect::Site>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub passed: bool,
    pub from_ms: i64,
    pub to_ms: i64,
    pub instances: Vec<InstanceResult>,
}

/// A saved result to compare later runs with (`--save-baseline`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub version: u32,
    /// `service` to budget name to the measured rate (the largest of the
    /// service's instances).
    pub rates: HashMap<String, HashMap<String, f64>>,
}

impl Baseline {
    pub fn from_result(r: &CheckResult) -> Baseline {
        let mut rates: HashMap<String, HashMap<String, f64>> = HashMap::new();
        for i in &r.instances {
            for item in i.items.iter().filter(|it| it.interval.is_some()) {
                let e = rates
                    .entry(i.service.clone())
                    .or_default()
                    .entry(item.name.clone())
                    .or_insert(f64::MIN);
                *e = e.max(item.measured);
            }
        }
        Baseline { version: 1, rates }
    }
}

#[derive(Clone, Copy)]
enum Rate {
    PerHour,
    Per1kRequests,
}

struct Growth {
    name: &'static str,
    metric: &'static str,
    unit: &'static str,
    rate: Rate,
    get: fn(&Budget) -> Option<f64>,
}

const GROWTH: &[Growth] = &[
    Growth {
        name: "heap_growth_per_hour",
        metric: metric::HEAP_ALLOCATED,
        unit: "bytes/h",
        rate: Rate::PerHour,
        get: |b| b.heap_growth_per_hour.map(|s| s.0),
    },
    Growth {
        name: "rss_growth_per_hour",
        metric: metric::RSS,
        unit: "bytes/h",
        rate: Rate::PerHour,
        get: |b| b.rss_growth_per_hour.map(|s| s.0),
    },
    Growth {
        name: "fds_growth_per_hour",
        metric: metric::FDS,
        unit: "fds/h",
        rate: Rate::PerHour,
        get: |b| b.fds_growth_per_hour,
    },
    Growth {
        name: "threads_growth_per_hour",
        metric: metric::THREADS,
        unit: "threads/h",
        rate: Rate::PerHour,
        get: |b| b.threads_growth_per_hour,
    },
    Growth {
        name: "heap_growth_per_1k_requests",
        metric: metric::HEAP_ALLOCATED,
        unit: "bytes/1k requests",
        rate: Rate::Per1kRequests,
        get: |b| b.heap_growth_per_1k_requests.map(|s| s.0),
    },
    Growth {
        name: "rss_growth_per_1k_requests",
        metric: metric::RSS,
        unit: "bytes/1k requests",
        rate: Rate::Per1kRequests,
        get: |b| b.rss_growth_per_1k_requests.map(|s| s.0),
    },
    Growth {
        name: "fds_growth_per_1k_requests",
        metric: metric::FDS,
        unit: "fds/1k requests",
        rate: Rate::Per1kRequests,
        get: |b| b.fds_growth_per_1k_requests,
    },
    Growth {
        name: "threads_growth_per_1k_requests",
        metric: metric::THREADS,
        unit: "threads/1k requests",
        rate: Rate::Per1kRequests,
        get: |b| b.threads_growth_per_1k_requests,
    },
];

struct Peak {
    name: &'static str,
    metric: &'static str,
    unit: &'static str,
    get: fn(&Budget) -> Option<f64>,
}

const PEAKS: &[Peak] = &[
    Peak {
        name: "peak_heap",
        metric: metric::HEAP_ALLOCATED,
        unit: "bytes",
        get: |b| b.peak_heap.map(|s| s.0),
    },
    Peak {
        name: "peak_rss",
        metric: metric::RSS,
        unit: "bytes",
        get: |b| b.peak_rss.map(|s| s.0),
    },
    Peak {
        name: "peak_fds",
        metric: metric::FDS,
        unit: "fds",
        get: |b| b.peak_fds,
    },
    Peak {
        name: "peak_threads",
        metric: metric::THREADS,
        unit: "threads",
        get: |b| b.peak_threads,
    },
];

/// What `check` needs to know beyond the budget file.
pub struct CheckQuery<'a> {
    pub service: Option<&'a str>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub baseline: Option<&'a Baseline>,
}

/// Judges every instance of every budgeted service with data in the window.
pub fn check(store: &dyn Store, budgets: &BudgetFile, q: &CheckQuery) -> Result<CheckResult> {
    let mut services: Vec<&str> = budgets.service.keys().map(String::as_str).collect();
    if let Some(s) = q.service {
        services = vec![s];
    }
    if services.is_empty() {
        return Err(Error::invalid(
            "budget",
            "the budget file names no [service.NAME], and no --service was given",
        ));
    }
    let mut instances = Vec::new();
    for service in services {
        let list = store.instances(Some(service))?;
        if list.is_empty() {
            return Err(Error::invalid(
                "service",
                format!("no data for service {service:?} in the store"),
            ));
        }
        for inst in list {
            let budget = budgets.for_instance(service, &inst.instance);
            let sel = Selector {
                service: service.to_owned(),
                instance: Some(inst.instance.clone()),
                from_ms: q.from_ms,
                to_ms: q.to_ms,
            };
            if store.series(&sel, metric::THREADS)?.is_empty() {
                continue; // not running during this window
            }
            instances.push(check_instance(store, &sel, &budget, q.baseline)?);
        }
    }
    if instances.is_empty() {
        return Err(Error::invalid(
            "since",
            "no instance of the budgeted services reported in the window",
        ));
    }
    let passed = instances.iter().all(|i| i.items.iter().all(|it| it.passed));
    Ok(CheckResult {
        passed,
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        instances,
    })
}

/// Points of the latest process lifetime, after the warm-up.
fn latest_segment(
    store: &dyn Store,
    sel: &Selector,
    metric: &str,
    warmup_ms: i64,
) -> Result<Vec<(i64, f64)>> {
    let pts = store.series(sel, metric)?;
    let Some(last) = pts.last().map(|p| p.segment) else {
        return Ok(Vec::new());
    };
    let seg: Vec<_> = pts.into_iter().filter(|p| p.segment == last).collect();
    let start = seg.first().map_or(0, |p| p.ts_ms) + warmup_ms;
    Ok(seg
        .into_iter()
        .filter(|p| p.ts_ms >= start)
        .map(|p| (p.ts_ms, p.min))
        .collect())
}

fn rate_trend(pts: &[(i64, f64)]) -> Option<(detect::stats::Trend, f64)> {
    let h: Vec<Pt> = pts
        .iter()
        .map(|(t, v)| (*t as f64 / 3_600_000.0, *v))
        .collect();
    if h.len() < 8 {
        return None;
    }
    let env = envelope(&h, (h.len() / 4).clamp(8, 48), Summary::Min);
    let span = h[h.len() - 1].0 - h[0].0;
    trend(&env).map(|t| (t, span))
}

fn check_instance(
    store: &dyn Store,
    sel: &Selector,
    b: &Budget,
    baseline: Option<&Baseline>,
) -> Result<InstanceResult> {
    let warmup_ms = b
        .warmup
        .as_deref()
        .and_then(|w| humantime::parse_duration(w).ok())
        .map_or(0, |d| d.as_millis() as i64);
    let policy = b.inconclusive.unwrap_or(Inconclusive::Pass);
    let margin = b.baseline_margin.unwrap_or(0.25);
    let mut items = Vec::new();
    // The growing allocation sites, read at most once per instance.
    let mut growing: Option<Vec<detect::Site>> = None;
    let mut heap_failed = false;
    let requests = latest_segment(store, sel, metric::REQUESTS, warmup_ms)?;
    let requests_per_hour = rate_trend(&requests)
        .map(|(t, _)| t.slope)
        .filter(|r| *r > 0.0);
    for g in GROWTH {
        let Some(budget) = (g.get)(b) else { continue };
        let pts = latest_segment(store, sel, g.metric, warmup_ms)?;
        let Some((t, span_h)) = rate_trend(&pts) else {
            return Err(Error::invalid(
                g.name,
                format!("{} of {}/{} has {} samples after the warm-up; need at least 8 (run longer or shorten warmup)", g.metric, sel.service, sel.instance.as_deref().unwrap_or(""), pts.len()),
            ));
        };
        let (mut slope, mut lo, mut hi) = (t.slope, t.lo, t.hi);
        let mut allowed_note = String::new();
        if g.metric == metric::HEAP_ALLOCATED {
            if let Some(allow) = &b.allow_sites {
                if growing.is_none() {
                    growing = Some(detect::growing_sites(store, sel, &Options::default())?);
                }
                let allowed: f64 = growing
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .filter(|s| {
                        s.frames
                            .iter()
                            .any(|f| allow.iter().any(|a| f.contains(a.as_str())))
                    })
                    .map(|s| s.slope_per_hour)
                    .sum();
                if allowed > 0.0 {
                    slope -= allowed;
                    lo -= allowed;
                    hi -= allowed;
                    allowed_note = format!(
                        " after subtracting {}/h from allowed sites",
                        crate::report::bytes(allowed)
                    );
                }
            }
        }
        if let Rate::Per1kRequests = g.rate {
            let Some(rph) = requests_per_hour else {
                return Err(Error::invalid(
                    g.name,
                    "the service reports no request counter (call heaptide_agent::count_requests)",
                ));
            };
            let k = 1000.0 / rph;
            (slope, lo, hi) = (slope * k, lo * k, hi * k);
        }
        let verdict = if lo > budget {
            Verdict::Fail
        } else if hi < budget {
            Verdict::Pass
        } else {
            Verdict::Inconclusive
        };
        let more = (verdict == Verdict::Inconclusive).then(|| {
            // The interval of a fitted slope narrows as time^(-3/2).
            let half = (hi - lo) / 2.0;
            let gap = (slope - budget).abs().max(half * 1e-3);
            let factor = (half / gap).powf(2.0 / 3.0);
            (factor - 1.0).max(0.0) * span_h * 3600.0
        });
        let fmt = |v: f64| fmt_unit(g.unit, v);
        let mut message = format!(
            "{} per {} ({} to {}){allowed_note}, budget {}",
            fmt(slope),
            g.unit.split('/').nth(1).unwrap_or(""),
            fmt(lo),
            fmt(hi),
            fmt(budget)
        );
        let mut item = Item {
            name: g.name.to_owned(),
            verdict,
            passed: match verdict {
                Verdict::Pass => true,
                Verdict::Fail => false,
                Verdict::Inconclusive => policy == Inconclusive::Pass,
            },
            unit: g.unit,
            budget,
            measured: slope,
            interval: Some([lo, hi]),
            message: String::new(),
            more_seconds_needed: more,
        };
        if let Some(m) = more {
            let _ = write!(
                message,
                "; about {} more would decide",
                crate::report::duration(m)
            );
        }
        if let Some(base) = baseline
            .and_then(|bl| bl.rates.get(&sel.service))
            .and_then(|r| r.get(g.name))
        {
            let limit = base.max(0.0) * (1.0 + margin) + epsilon(g.unit);
            if lo > limit {
                item.verdict = Verdict::Fail;
                item.passed = false;
                let _ = write!(
                    message,
                    "; rose beyond the baseline's {} (+{:.0}% allowed)",
                    fmt(*base),
                    margin * 100.0
                );
            }
        }
        item.message = message;
        heap_failed |= !item.passed && g.metric == metric::HEAP_ALLOCATED;
        items.push(item);
    }
    for p in PEAKS {
        let Some(budget) = (p.get)(b) else { continue };
        let peak = store
            .series(sel, p.metric)?
            .iter()
            .map(|x| x.max)
            .fold(f64::NAN, f64::max);
        items.push(ceiling(p.name, p.unit, peak, budget));
    }
    if let Some(budget) = b.pause_p99_ms {
        let mut p99: Vec<f64> = store
            .series(sel, metric::PAUSE_P99_MS)?
            .iter()
            .map(|p| p.value)
            .collect();
        // The median interval's p99: one bad interval is noise, a typical
        // one is the service.
        let typical = crate::detect::stats::median(&mut p99);
        let mut it = ceiling("pause_p99_ms", "ms", typical, budget);
        it.message = format!("median interval p99 {typical:.1} ms, budget {budget:.1} ms");
        items.push(it);
    }
    if let Some(budget) = b.pause_max_ms {
        let from_series = store
            .series(sel, metric::PAUSE_MAX_MS)?
            .iter()
            .map(|p| p.max)
            .fold(0.0, f64::max);
        let from_events = store
            .pauses(sel)?
            .iter()
            .map(|p| p.duration_ms)
            .fold(0.0, f64::max);
        items.push(ceiling(
            "pause_max_ms",
            "ms",
            from_series.max(from_events),
            budget,
        ));
    }
    // A failing heap budget names the sites that grow.
    let sites = match (heap_failed, growing) {
        (false, _) => Vec::new(),
        (true, Some(g)) => g,
        (true, None) => detect::growing_sites(store, sel, &Options::default())?,
    };
    Ok(InstanceResult {
        service: sel.service.clone(),
        instance: sel.instance.clone().unwrap_or_default(),
        items,
        sites,
    })
}

/// Growth below this is noise whatever the baseline said.
fn epsilon(unit: &str) -> f64 {
    if unit.starts_with("bytes") {
        64.0 * 1024.0
    } else {
        0.5
    }
}

fn ceiling(name: &str, unit: &'static str, peak: f64, budget: f64) -> Item {
    let ok = peak.is_nan() || peak <= budget;
    Item {
        name: name.to_owned(),
        verdict: if ok { Verdict::Pass } else { Verdict::Fail },
        passed: ok,
        unit,
        budget,
        measured: peak,
        interval: None,
        message: if peak.is_nan() {
            "no data".into()
        } else {
            format!(
                "peak {}, budget {}",
                fmt_unit(unit, peak),
                fmt_unit(unit, budget)
            )
        },
        more_seconds_needed: None,
    }
}

fn fmt_unit(unit: &str, v: f64) -> String {
    if unit.starts_with("bytes") {
        crate::report::bytes(v)
    } else if unit == "ms" {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} {}", unit.split('/').next().unwrap_or(unit))
    }
}

/// The human summary.
pub fn text(r: &CheckResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "heaptide check: {}",
        if r.passed { "PASS" } else { "FAIL" }
    );
    for i in &r.instances {
        let _ = writeln!(out, "\n{}/{}", i.service, i.instance);
        for it in &i.items {
            let tag = match (it.verdict, it.passed) {
                (Verdict::Pass, _) => "pass",
                (Verdict::Fail, _) => "FAIL",
                (Verdict::Inconclusive, true) => "inconclusive (passes)",
                (Verdict::Inconclusive, false) => "INCONCLUSIVE (fails)",
            };
            let _ = writeln!(out, "  {tag:<22} {}: {}", it.name, it.message);
        }
        if !i.sites.is_empty() {
            let _ = writeln!(out, "  growing allocation sites:");
            for s in &i.sites {
                let name = crate::report::site_name(s);
                let _ = writeln!(
                    out,
                    "    {:>3.0}%  +{}/h  {name}",
                    s.share * 100.0,
                    crate::report::bytes(s.slope_per_hour)
                );
                for f in s.frames.iter().skip(s.app_frame.unwrap_or(0) + 1).take(4) {
                    let _ = writeln!(out, "           <- {f}");
                }
            }
        }
    }
    out
}

fn xml(s: &str) -> String {
    heaptide_ui::svg::esc(s)
}

/// JUnit XML: a suite per instance, a test case per budget line.
pub fn junit(r: &CheckResult) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total: usize = r.instances.iter().map(|i| i.items.len()).sum();
    let failed: usize = r
        .instances
        .iter()
        .map(|i| i.items.iter().filter(|it| !it.passed).count())
        .sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"heaptide\" tests=\"{total}\" failures=\"{failed}\">"
    );
    for i in &r.instances {
        let f = i.items.iter().filter(|it| !it.passed).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\">",
            xml(&format!("{}/{}", i.service, i.instance)),
            i.items.len()
        );
        for it in &i.items {
            let class = xml(&format!("heaptide.{}.{}", i.service, i.instance));
            let _ = write!(
                out,
                "    <testcase classname=\"{class}\" name=\"{}\"",
                xml(&it.name)
            );
            if it.passed && it.verdict != Verdict::Inconclusive {
                let _ = writeln!(out, "/>");
            } else if it.passed {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml(&format!("inconclusive: {}", it.message))
                );
            } else {
                let mut body = it.message.clone();
                for s in &i.sites {
                    body.push_str(&format!(
                        "\n{:.0}% {}",
                        s.share * 100.0,
                        s.frames.join(" <- ")
                    ));
                }
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    xml(&it.message),
                    xml(&body)
                );
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

/// A Markdown summary, for `GITHUB_STEP_SUMMARY`.
pub fn markdown(r: &CheckResult) -> String {
    let mut out = format!(
        "### heaptide check: {}\n\n",
        if r.passed { "pass" } else { "**fail**" }
    );
    out.push_str("| instance | budget | verdict | measured |\n|---|---|---|---|\n");
    for i in &r.instances {
        for it in &i.items {
            let v = match (it.verdict, it.passed) {
                (Verdict::Pass, _) => "pass",
                (Verdict::Fail, _) => "**fail**",
                (Verdict::Inconclusive, true) => "inconclusive (pass)",
                (Verdict::Inconclusive, false) => "**inconclusive (fail)**",
            };
            let _ = writeln!(
                out,
                "| {}/{} | `{}` | {v} | {} |",
                i.service,
                i.instance,
                it.name,
                it.message.replace('|', "\\|")
            );
        }
        for s in &i.sites {
            let name = crate::report::site_name(s);
            let _ = writeln!(
                out,
                "\ngrowing site ({:.0}%): `{}`",
                s.share * 100.0,
                name.replace('`', "'")
            );
        }
    }
    out
}
