//! The driver: reads each instance's series from the store, runs the pure
//! judgement of [`super::assess`] on them, and assembles the findings.

use std::collections::HashMap;

use super::cohort::{cohorts, window};
use super::reads::{bucket_ms, peak_window, Reads};
use super::stats::Bucket;
use super::{
    assess_lifetimes, runway, Analysis, Assessment, Finding, LeakVerdict, Lifetime, Options,
    Resource, Severity, Subject,
};
use crate::error::Result;
use crate::select::Selector;
use crate::store::{EnvelopeBucket, InstanceInfo, Store};
use heaptide_wire::metric;

pub(crate) fn to_h(ms: i64) -> f64 {
    ms as f64 / super::MS_PER_HOUR
}

/// The envelope of one metric of one instance, split by segment: the
/// store computes each bucket's floor and peak, so raw points stay there.
pub(super) fn segmented(store: &dyn Store, sel: &Selector, metric: &str) -> Result<Vec<Lifetime>> {
    Ok(split(store.envelope(sel, metric, bucket_ms(sel))?))
}

/// An envelope's buckets, split into one lifetime per segment.
pub(super) fn split(buckets: Vec<EnvelopeBucket>) -> Vec<Lifetime> {
    let mut segs: Vec<(i64, Vec<EnvelopeBucket>)> = Vec::new();
    for b in buckets {
        match segs.iter_mut().find(|(id, _)| *id == b.segment) {
            Some((_, v)) => v.push(b),
            None => segs.push((b.segment, vec![b])),
        }
    }
    segs.into_iter().map(|(_, v)| lifetime(v)).collect()
}

/// A lifetime from its envelope. A bucket cut short by the window's edge
/// holds fewer samples, so its minimum sits higher than a full bucket's
/// would: such a first or last bucket would read as a step, and is left
/// out (its samples still count).
fn lifetime(mut v: Vec<EnvelopeBucket>) -> Lifetime {
    let samples = v.iter().map(|b| b.samples.max(0) as usize).sum();
    let mut counts: Vec<i64> = v.iter().map(|b| b.samples).collect();
    counts.sort_unstable();
    let typical = counts.get(counts.len() / 2).copied().unwrap_or(0);
    let short = |b: &EnvelopeBucket| b.samples * 2 < typical;
    if v.len() > 8 && v.last().is_some_and(short) {
        v.pop();
    }
    if v.len() > 8 && v.first().is_some_and(short) {
        v.remove(0);
    }
    Lifetime {
        buckets: v
            .iter()
            .map(|b| Bucket {
                t: to_h(b.ts_ms),
                start: to_h(b.first_ms),
                min: b.min,
                max: b.max,
            })
            .collect(),
        samples,
    }
}

/// Runs the engine over every resource of every matching instance.
pub fn analyze(store: &dyn Store, q: &Selector, opts: &Options) -> Result<Analysis> {
    let instances: Vec<_> = store
        .instances(q.service.as_deref())?
        .into_iter()
        .filter(|i| q.instance.as_deref().is_none_or(|x| x == i.instance))
        .collect();
    // Instances are judged in cohorts (a service's instances that span
    // the whole window together, from one batch of reads; any other
    // alone), on as many threads as the machine has cores unless told
    // fewer (the store hands each its own read connection), times the
    // reads per core the store serves well.
    let cohorts = cohorts(q, &instances);
    // The pools and queues each service reports, read once per service
    // (the store answers a service's names from its newest samples, not
    // by scanning every name it holds): each instance is judged on those
    // it has.
    let mut gauges: HashMap<&str, Vec<Subject>> = HashMap::new();
    for i in &instances {
        if !gauges.contains_key(i.service.as_str()) {
            let names = store.metric_names(&i.service, None)?;
            gauges.insert(&i.service, Subject::gauges_among(&names));
        }
    }
    let workers = opts
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .saturating_mul(store.reads_per_core().max(1))
        .min(cohorts.len())
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut findings = Vec::with_capacity(instances.len() * Resource::ALL.len());
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<Finding>> {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(cohort) = cohorts.get(i) else {
                            return Ok(out);
                        };
                        let mine = gauges.get(cohort[0].service.as_str());
                        let mine = mine.map_or(&[][..], Vec::as_slice);
                        out.extend(judge_cohort(store, q, cohort, mine, opts)?);
                    }
                })
            })
            .collect();
        for h in handles {
            let part = h
                .join()
                .map_err(|_| crate::Error::invalid("analysis", "a worker thread panicked"))??;
            findings.extend(part);
        }
        Ok(())
    })?;
    corroborate(&mut findings);
    // Workers finish cohorts in any order: back to the store's order of
    // instances, and each one's resources in order, before the stable sort.
    let place = |f: &Finding| Resource::KINDS.iter().position(|r| *r == f.resource);
    findings.sort_by(|a, b| {
        (&a.service, &a.instance, place(a), &a.metric).cmp(&(
            &b.service,
            &b.instance,
            place(b),
            &b.metric,
        ))
    });
    sort_worst_first(&mut findings);
    // Restarts in the window (the current process started in it): how
    // the processes before ended, when memory ended them.
    let mut deaths = Vec::new();
    for inst in instances
        .iter()
        .filter(|i| i.segments > 1 && i.start_time_ms > q.from_ms)
    {
        deaths.extend(super::death::deaths_of(store, &window(q, inst))?);
    }
    Ok(Analysis {
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        findings,
        deaths,
    })
}

/// Corroboration across the instances of a service: how many grow, and
/// a leak's confidence raised when several do, lowered when it grows alone
/// among steady peers.
fn corroborate(findings: &mut [Finding]) {
    let mut growing: HashMap<(String, String), (usize, usize)> = HashMap::new();
    for f in findings.iter() {
        let e = growing
            .entry((f.service.clone(), f.metric.clone()))
            .or_default();
        if f.verdict != LeakVerdict::InsufficientData {
            e.1 += 1;
        }
        if f.verdict == LeakVerdict::Leak {
            e.0 += 1;
        }
    }
    for f in findings.iter_mut() {
        let (g, n) = growing[&(f.service.clone(), f.metric.clone())];
        f.instances_growing = g;
        f.instances = n;
        if let (Some(c), LeakVerdict::Leak) = (f.confidence, f.verdict) {
            // Growth on several instances at once is more likely real; a
            // lone grower among many steady peers, less.
            let doubt = if g >= 2 {
                0.1
            } else if n >= 3 {
                3.0
            } else {
                1.0
            };
            f.confidence = Some((1.0 - (1.0 - c) * doubt).clamp(0.0, 0.9999));
        }
    }
}

/// Every resource of each instance of a cohort: from one batch of reads
/// when it holds several, else from the instance's own.
fn judge_cohort(
    store: &dyn Store,
    q: &Selector,
    cohort: &[&InstanceInfo],
    gauges: &[Subject],
    opts: &Options,
) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let mut needs = Vec::new();
    let mut batch = match cohort {
        [first, _, ..] => {
            let names: Vec<&str> = cohort.iter().map(|i| i.instance.as_str()).collect();
            Reads::fetch_cohort(store, &q.for_service(&first.service), &names, gauges)?
        }
        _ => HashMap::new(),
    };
    for inst in cohort {
        let sel = window(q, inst);
        let mut read = match batch.remove(&inst.instance) {
            Some(r) => r,
            None => Reads::fetch(store, &sel, gauges)?,
        };
        let mine: Vec<&Subject> = gauges.iter().filter(|s| read.has(&s.metric)).collect();
        let mut judged = Vec::new();
        for s in Resource::ALL.map(Subject::of).iter().chain(mine) {
            judged.push(judge(store, &mut read, &sel, s, opts)?);
        }
        super::detail::merge_socket_fds(&mut judged);
        for f in judged {
            if let Some(from) = needs_sites(&f, &sel) {
                needs.push((
                    out.len(),
                    Selector {
                        from_ms: from,
                        ..sel.clone()
                    },
                ));
            }
            out.push(f);
        }
    }
    // The growing heaps' sites, their profiles read for the cohort at once.
    super::sites::name_sites(store, &mut out, &needs, opts)?;
    Ok(out)
}

/// Where a finding's growing allocation sites are looked for, if it
/// needs them: a heap that grows, from when it began to.
fn needs_sites(f: &Finding, sel: &Selector) -> Option<i64> {
    (f.resource == Resource::Heap && f.verdict.alarms() && f.verdict != LeakVerdict::Exhausted)
        .then(|| f.started_ms.unwrap_or(sel.from_ms).max(sel.from_ms))
}

/// Orders findings worst first: leaks by time to exhaustion, then the
/// rest.
pub(crate) fn sort_worst_first(findings: &mut [Finding]) {
    findings.sort_by(|a, b| rank(a).total_cmp(&rank(b)));
}

/// Sort key, worst first: leaks by time to exhaustion, then the rest.
fn rank(f: &Finding) -> f64 {
    match f.verdict {
        LeakVerdict::Exhausted => -1.0,
        LeakVerdict::Leak => f.time_to_exhaustion_seconds.unwrap_or(1e15),
        LeakVerdict::Bounded => 2e15,
        LeakVerdict::Flat => 3e15,
        LeakVerdict::InsufficientData => 4e15,
    }
}

fn judge(
    store: &dyn Store,
    reads: &mut Reads,
    sel: &Selector,
    subject: &Subject,
    opts: &Options,
) -> Result<Finding> {
    let (r, m) = (subject.resource, subject.metric.as_str());
    let segs = reads.lifetimes(m);
    let a = if segs.is_empty() {
        Assessment::no_samples(m)
    } else {
        assess_lifetimes(&segs, opts)
    };
    let (limit, limit_source) = limit_of(reads, subject);
    let room = match limit {
        Some(l) => Some(room(store, reads, sel, r, l)?),
        None => None,
    };
    let (mut a, mut runway_h) = settle(a, room, opts);
    if !a.verdict.alarms() && room.is_some() {
        if let Some(found) = recent_look(store, reads, sel, m, room, opts)? {
            (a, runway_h) = found;
        }
    }
    let mut f = finding(
        sel,
        subject,
        &a,
        reads.get(m),
        (limit, limit_source),
        runway_h,
    );
    if let (Some(current), Some(limit)) = (f.current, f.limit) {
        if super::early::at_limit(r, current, limit) {
            super::early::exhausted(&mut f, current, limit);
            if let Some(w) = subject.sibling(metric::POOL_WAITING) {
                super::early::waiting(&mut f, reads.get(&w));
            }
        }
    }
    if !f.verdict.alarms() {
        return Ok(f);
    }
    f.severity = Some(Severity::of(f.time_to_exhaustion_seconds));
    // What ran out is named like a leak's growth, when it grew.
    super::detail::explain(store, sel, subject, &mut f, reads.names.as_deref(), opts)?;
    Ok(f)
}

/// The finding of an assessment, before what an exhausted or leaking
/// resource adds.
fn finding(
    sel: &Selector,
    subject: &Subject,
    a: &Assessment,
    current: Option<f64>,
    (limit, limit_source): (Option<f64>, Option<&'static str>),
    runway_h: Option<Runway>,
) -> Finding {
    let r = subject.resource;
    Finding {
        service: sel.service.clone().unwrap_or_default(),
        instance: sel.instance.clone().unwrap_or_default(),
        resource: r,
        metric: subject.metric.clone(),
        unit: r.unit(),
        verdict: a.verdict,
        severity: None,
        reason: a.reason.clone(),
        slope_per_hour: a.fit.map(|g| g.trend.slope),
        slope_ci: a.fit.map(|g| [g.trend.lo, g.trend.hi]),
        confidence: a.fit.map(|g| (1.0 - g.trend.p_up).clamp(0.0, 0.9999)),
        started_ms: a.started_ms,
        current,
        limit,
        limit_source: limit_source.map(str::to_owned),
        time_to_exhaustion_seconds: runway_h.map(|(mid, _, _)| mid * 3600.0),
        time_to_exhaustion_bounds_seconds: runway_h.map(|(_, lo, hi)| [lo * 3600.0, hi * 3600.0]),
        detail: None,
        instances_growing: 0,
        instances: 0,
        sites: Vec::new(),
        also_seen_as: None,
    }
}

/// A leak's time to exhaustion in hours: at its fitted rate, and at the
/// fast and slow ends of its interval.
type Runway = (f64, f64, f64);

/// The recent look ([`super::early::recent_lifetime`]), while the agent
/// says the resource runs out: a leak it finds, with its runway.
fn recent_look(
    store: &dyn Store,
    reads: &Reads,
    sel: &Selector,
    m: &str,
    room: Option<(f64, f64)>,
    opts: &Options,
) -> Result<Option<(Assessment, Option<Runway>)>> {
    if !reads.get(metric::AGENT_URGENT).is_some_and(|u| u >= 1.0) {
        return Ok(None);
    }
    let pace = reads.get(metric::AGENT_INTERVAL_SECONDS);
    let Some(life) = super::early::recent_lifetime(store, sel, m, pace, opts)? else {
        return Ok(None);
    };
    let (b, runway_h) = settle(assess_lifetimes(&[life], opts), room, opts);
    Ok((b.verdict == LeakVerdict::Leak).then(|| (super::early::recent(b), runway_h)))
}

/// An assessment with its early verdict settled by its runway, in hours,
/// and that runway when the verdict is a leak.
fn settle(a: Assessment, room: Option<(f64, f64)>, opts: &Options) -> (Assessment, Option<Runway>) {
    let runway_h = room.and_then(|(l, peak)| runway(&a, l, peak));
    let a = a.settle_early(runway_h.map(|(fitted, _, _)| fitted * 3600.0), opts);
    let leak = a.verdict == LeakVerdict::Leak;
    (a, runway_h.filter(|_| leak))
}

/// The limit a resource's growth really has left, and its recent peak:
/// heap runs out when allocated bytes reach the limit less everything in
/// memory that is not heap (RSS, or the cgroup's `memory.current`, less
/// allocated); RSS from its peaks of the last hour, not its floor.
fn room(
    store: &dyn Store,
    reads: &Reads,
    sel: &Selector,
    r: Resource,
    limit: f64,
) -> Result<(f64, f64)> {
    let recent = peak_window(sel);
    match r {
        Resource::Heap => {
            let memory = reads
                .get(metric::CGROUP_MEMORY_CURRENT)
                .or_else(|| reads.get(metric::RSS));
            let heap = reads.get(metric::HEAP_ALLOCATED);
            let other = match (memory, heap) {
                (Some(m), Some(h)) => (m - h).max(0.0),
                _ => 0.0,
            };
            Ok((limit - other, f64::NEG_INFINITY))
        }
        Resource::Rss => {
            let peak = match reads.rss_peak {
                Some(peak) => peak,
                None => store
                    .series(&recent, metric::RSS)?
                    .iter()
                    .map(|p| p.max)
                    .fold(f64::NEG_INFINITY, f64::max),
            };
            Ok((limit, peak))
        }
        _ => Ok((limit, f64::NEG_INFINITY)),
    }
}

fn limit_of(reads: &Reads, subject: &Subject) -> (Option<f64>, Option<&'static str>) {
    if let Some(cap) = subject.sibling(metric::CAPACITY) {
        let source = match subject.resource {
            Resource::Pool => "pool capacity",
            _ => "queue capacity",
        };
        return (reads.get(&cap), Some(source));
    }
    let (candidates, smallest) = subject.resource.limits();
    let mut best: Option<(f64, &'static str)> = None;
    for (m, source) in candidates {
        if let Some(v) = reads.get(m) {
            // A cgroup limit above physical memory means "none".
            if *m == metric::LIMIT_MEMORY_MAX || *m == metric::LIMIT_AS {
                if let Some(phys) = reads.get(metric::LIMIT_PHYSICAL_MEMORY) {
                    if v >= phys {
                        continue;
                    }
                }
            }
            match best {
                None => best = Some((v, source)),
                Some((b, _)) if smallest && v < b => best = Some((v, source)),
                _ => {}
            }
            if !smallest {
                break;
            }
        }
    }
    (best.map(|b| b.0), best.map(|b| b.1))
}
