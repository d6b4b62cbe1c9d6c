//! Judging one instance against its budget.

use std::fmt::Write;

use super::rules::{gauge_rules, GrowthRule, Per, GROWTH, PEAKS};
use super::{Baseline, BudgetVerdict, InstanceResult, Item, Measure};
use crate::check::budget::{Budget, Inconclusive};
use crate::detect::stats::{fit_growth, median, GrowthFit, Pt, RecipeOptions};
use crate::detect::{self, Options};
use crate::error::{Error, Result};
use crate::select::Selector;
use crate::store::Store;
use heaptide_ui::format;
use heaptide_wire::{metric, Unit};

/// Fewest points after the warm-up for a rate to be judged.
const MIN_POINTS: usize = 8;

/// What one instance's growth items share: the budget, the request rate
/// and the growing allocation sites, read at most once.
struct Context<'a> {
    store: &'a dyn Store,
    sel: &'a Selector,
    budget: &'a Budget,
    baseline: Option<&'a Baseline>,
    requests_per_hour: Option<f64>,
    growing: Option<Vec<detect::Site>>,
}

impl Context<'_> {
    fn sites(&mut self) -> Result<&[detect::Site]> {
        if self.growing.is_none() {
            self.growing = Some(detect::growing_sites(
                self.store,
                self.sel,
                &Options::default(),
            )?);
        }
        Ok(self.growing.as_deref().unwrap_or_default())
    }
}

pub(super) fn instance(
    store: &dyn Store,
    sel: &Selector,
    budget: &Budget,
    baseline: Option<&Baseline>,
) -> Result<InstanceResult> {
    let warmup_ms = budget.warmup.map_or(0, |w| crate::select::ms(w.0));
    let requests = lifetimes(store, sel, metric::REQUESTS, warmup_ms)?
        .pop()
        .unwrap_or_default();
    let mut cx = Context {
        store,
        sel,
        budget,
        baseline,
        requests_per_hour: rate(&requests).map(|g| g.trend.slope).filter(|r| *r > 0.0),
        growing: None,
    };
    let mut items = Vec::new();
    let mut heap_failed = false;
    for rule in GROWTH {
        let Some(limit) = (rule.get)(budget) else {
            continue;
        };
        let item = worst_lifetime(&mut cx, rule, warmup_ms, limit)?;
        heap_failed |= !item.passed && rule.metric == metric::HEAP_ALLOCATED;
        items.push(item);
    }
    for (rule, limit) in gauge_rules(budget) {
        items.push(worst_lifetime(&mut cx, &rule, warmup_ms, limit)?);
    }
    items.extend(ceilings(store, sel, budget)?);
    if let Some(item) = restarts(store, sel, budget, warmup_ms)? {
        items.push(item);
    }
    // A failing heap budget names the sites that grow.
    let sites = if heap_failed {
        cx.sites()?.to_vec()
    } else {
        Vec::new()
    };
    Ok(InstanceResult {
        service: sel.service.clone().unwrap_or_default(),
        instance: sel.instance.clone().unwrap_or_default(),
        items,
        sites,
    })
}

/// Points, in hours, of each process lifetime in the window after its
/// warm-up, oldest first.
fn lifetimes(
    store: &dyn Store,
    sel: &Selector,
    metric: &str,
    warmup_ms: i64,
) -> Result<Vec<Vec<Pt>>> {
    let mut out: Vec<(i64, i64, Vec<Pt>)> = Vec::new();
    for p in store.series(sel, metric)? {
        match out.last_mut() {
            Some((seg, start, pts)) if *seg == p.segment => {
                if p.ts_ms >= *start + warmup_ms {
                    pts.push((detect::to_h(p.ts_ms), p.min));
                }
            }
            _ => {
                let first = (warmup_ms <= 0).then(|| (detect::to_h(p.ts_ms), p.min));
                out.push((p.segment, p.ts_ms, first.into_iter().collect()));
            }
        }
    }
    out.sort_by_key(|(_, start, _)| *start);
    Ok(out.into_iter().map(|(_, _, pts)| pts).collect())
}

/// The budget line of the lifetime that fares worst; with one lifetime,
/// its own.
fn worst_lifetime(cx: &mut Context, rule: &GrowthRule, warmup_ms: i64, limit: f64) -> Result<Item> {
    let lives = lifetimes(cx.store, cx.sel, &rule.metric, warmup_ms)?;
    let judged: Vec<&Vec<Pt>> = lives.iter().filter(|l| l.len() >= MIN_POINTS).collect();
    let n = judged.len();
    if n <= 1 {
        let latest = judged.last().copied().or(lives.last());
        return growth_item(cx, rule, latest.map_or(&[][..], |v| v.as_slice()), limit);
    }
    let mut worst: Option<(usize, Item)> = None;
    for (k, pts) in judged.iter().enumerate() {
        let item = growth_item(cx, rule, pts, limit)?;
        let badness = |i: &Item| {
            (
                u8::from(!i.passed),
                u8::from(i.verdict != BudgetVerdict::Pass),
            )
        };
        if worst
            .as_ref()
            .is_none_or(|(_, w)| badness(&item) >= badness(w))
        {
            worst = Some((k, item));
        }
    }
    let (k, mut item) = worst.expect("two or more lifetimes were judged");
    item.message = format!("{} (process lifetime {} of {n})", item.message, k + 1);
    Ok(item)
}

/// A restart in the window fails the run unless the budget allows it,
/// naming when it happened and what grew before it.
fn restarts(store: &dyn Store, sel: &Selector, b: &Budget, warmup_ms: i64) -> Result<Option<Item>> {
    let (service, instance) = (
        sel.service.as_deref().unwrap_or_default(),
        sel.instance.as_deref().unwrap_or_default(),
    );
    let segments: Vec<_> = store
        .segments(service, instance)?
        .into_iter()
        .filter(|s| s.last_seen_ms >= sel.from_ms && s.first_seen_ms <= sel.to_ms)
        .collect();
    if segments.len() < 2 {
        return Ok(None);
    }
    let allowed = b.allow_restarts.unwrap_or(false);
    let (before, after) = (&segments[segments.len() - 2], &segments[segments.len() - 1]);
    let mut grew = Vec::new();
    for rule in GROWTH.iter().filter(|r| r.measure.per == Per::Hour) {
        let lives = lifetimes(store, sel, &rule.metric, warmup_ms)?;
        let Some(fit) = lives
            .get(lives.len().saturating_sub(2))
            .and_then(|l| rate(l))
        else {
            continue;
        };
        if lives.len() >= 2 && fit.is_growing(1e-3) {
            grew.push(format!(
                "{} {}",
                rule.metric,
                format::rate_per_hour(rule.measure.unit, fit.trend.slope)
            ));
        }
    }
    let grew = if grew.is_empty() {
        "nothing grew measurably before it".to_owned()
    } else {
        format!("before it: {}", grew.join(", "))
    };
    let n = (segments.len() - 1) as f64;
    Ok(Some(Item {
        name: "restarts".into(),
        verdict: if allowed {
            BudgetVerdict::Pass
        } else {
            BudgetVerdict::Fail
        },
        passed: allowed,
        unit: Measure {
            unit: Unit::Restarts,
            per: Per::Level,
        },
        budget: 0.0,
        measured: n,
        interval: None,
        message: format!(
            "restarted at {} (pid {} -> {}); {grew}{}",
            format::clock(after.start_time_ms),
            before.pid,
            after.pid,
            if allowed {
                "; allowed by allow_restarts"
            } else {
                ""
            }
        ),
        more_seconds_needed: None,
    }))
}

/// The growth recipe at the budget's 95% interval.
fn rate(pts: &[Pt]) -> Option<GrowthFit> {
    if pts.len() < MIN_POINTS {
        return None;
    }
    fit_growth(pts, &RecipeOptions::default())
}

fn growth_item(cx: &mut Context, rule: &GrowthRule, pts: &[Pt], limit: f64) -> Result<Item> {
    let Some(fit) = rate(pts) else {
        return Err(Error::invalid(
            &*rule.name,
            format!(
                "{} of {}/{} has {} samples after the warm-up; need at least {MIN_POINTS} (run longer or shorten warmup)",
                rule.metric,
                cx.sel.service.as_deref().unwrap_or(""),
                cx.sel.instance.as_deref().unwrap_or(""),
                pts.len()
            ),
        ));
    };
    let t = fit.trend;
    let (mut slope, mut lo, mut hi) = (t.slope, t.lo, t.hi);
    let mut allowed_note = String::new();
    if rule.metric == metric::HEAP_ALLOCATED {
        if let Some(allow) = cx.budget.allow_sites.clone() {
            let allowed: f64 = cx
                .sites()?
                .iter()
                .filter(|s| {
                    s.frames
                        .iter()
                        .any(|f| allow.iter().any(|a| f.contains(a.as_str())))
                })
                .map(|s| s.slope_per_hour)
                .sum();
            if allowed > 0.0 {
                (slope, lo, hi) = (slope - allowed, lo - allowed, hi - allowed);
                allowed_note = format!(
                    " after subtracting {}/h from allowed sites",
                    format::bytes(allowed)
                );
            }
        }
    }
    if rule.measure.per == Per::ThousandRequests {
        let Some(rph) = cx.requests_per_hour else {
            return Err(Error::invalid(
                &*rule.name,
                "the service reports no request counter (call heaptide_agent::count_requests)",
            ));
        };
        let k = 1000.0 / rph;
        (slope, lo, hi) = (slope * k, lo * k, hi * k);
    }
    let mut item = judge_rate(cx, rule, [slope, lo, hi], limit, fit.span());
    let fmt = |v: f64| format::precise(rule.measure.unit, v);
    let per = match rule.measure.per {
        Per::ThousandRequests => "1k requests",
        _ => "h",
    };
    let mut message = format!(
        "{} per {per} ({} to {}){allowed_note}, budget {}",
        fmt(slope),
        fmt(lo),
        fmt(hi),
        fmt(limit)
    );
    if let Some(m) = item.more_seconds_needed {
        let _ = write!(message, "; about {} more would decide", format::duration(m));
    }
    message.push_str(&item.message);
    item.message = message;
    Ok(item)
}

/// The verdict of a rate against its budget and the baseline; `message`
/// holds only the baseline's note.
fn judge_rate(
    cx: &Context,
    rule: &GrowthRule,
    [slope, lo, hi]: [f64; 3],
    limit: f64,
    span_h: f64,
) -> Item {
    let verdict = if lo > limit {
        BudgetVerdict::Fail
    } else if hi < limit {
        BudgetVerdict::Pass
    } else {
        BudgetVerdict::Inconclusive
    };
    let more = (verdict == BudgetVerdict::Inconclusive).then(|| {
        // The interval of a fitted slope narrows as time^(-3/2).
        let half = (hi - lo) / 2.0;
        let gap = (slope - limit).abs().max(half * 1e-3);
        let factor = (half / gap).powf(2.0 / 3.0);
        (factor - 1.0).max(0.0) * span_h * 3600.0
    });
    let policy = cx.budget.inconclusive.unwrap_or(Inconclusive::Pass);
    let mut item = Item {
        name: rule.name.to_string(),
        verdict,
        passed: match verdict {
            BudgetVerdict::Pass => true,
            BudgetVerdict::Fail => false,
            BudgetVerdict::Inconclusive => policy == Inconclusive::Pass,
        },
        unit: rule.measure,
        budget: limit,
        measured: slope,
        interval: Some([lo, hi]),
        message: String::new(),
        more_seconds_needed: more,
    };
    let margin = cx.budget.baseline_margin.unwrap_or(0.25);
    let base = cx
        .baseline
        .and_then(|bl| bl.rates.get(cx.sel.service.as_deref().unwrap_or("")))
        .and_then(|r| r.get(&*rule.name));
    if let Some(base) = base {
        let allowed = base.max(0.0) * (1.0 + margin) + epsilon(rule.measure.unit);
        if lo > allowed {
            item.verdict = BudgetVerdict::Fail;
            item.passed = false;
            item.message = format!(
                "; rose beyond the baseline's {} (+{:.0}% allowed)",
                format::precise(rule.measure.unit, *base),
                margin * 100.0
            );
        }
    }
    item
}

/// Growth below this is noise whatever the baseline said.
fn epsilon(unit: Unit) -> f64 {
    if unit == Unit::Bytes {
        64.0 * 1024.0
    } else {
        0.5
    }
}

/// The ceiling budgets: peaks and pauses.
fn ceilings(store: &dyn Store, sel: &Selector, b: &Budget) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for p in PEAKS {
        let Some(limit) = (p.get)(b) else { continue };
        let peak = store
            .series(sel, p.metric)?
            .iter()
            .map(|x| x.max)
            .fold(f64::NAN, f64::max);
        items.push(ceiling(p.name, p.unit, peak, limit));
    }
    if let Some(limit) = b.pause_p99_ms {
        let mut p99: Vec<f64> = store
            .series(sel, metric::PAUSE_P99_MS)?
            .iter()
            .map(|p| p.value)
            .collect();
        // The median interval's p99: one bad interval is noise, a typical
        // one is the service.
        let typical = median(&mut p99);
        let mut it = ceiling("pause_p99_ms", Unit::Millis, typical, limit);
        it.message = format!("median interval p99 {typical:.1} ms, budget {limit:.1} ms");
        items.push(it);
    }
    if let Some(limit) = b.pause_max_ms {
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
            Unit::Millis,
            from_series.max(from_events),
            limit,
        ));
    }
    Ok(items)
}

fn ceiling(name: &str, unit: Unit, peak: f64, limit: f64) -> Item {
    let ok = peak.is_nan() || peak <= limit;
    Item {
        name: name.to_owned(),
        verdict: if ok {
            BudgetVerdict::Pass
        } else {
            BudgetVerdict::Fail
        },
        passed: ok,
        unit: Measure {
            unit,
            per: Per::Level,
        },
        budget: limit,
        measured: peak,
        interval: None,
        message: if peak.is_nan() {
            "no data".into()
        } else {
            format!(
                "peak {}, budget {}",
                format::precise(unit, peak),
                format::precise(unit, limit)
            )
        },
        more_seconds_needed: None,
    }
}
