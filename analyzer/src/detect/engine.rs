//! The detection engine: pure functions over series ([`assess`],
//! [`assess_sites`]) and the driver that feeds them from a store
//! ([`analyze`]).

use std::collections::HashMap;

use serde::Serialize;

use super::stats::{envelope, level_shifts, trend, Pt, Summary, Trend};
use crate::error::Result;
use crate::store::{Selector, Store};
use heaptide_wire::metric;

const MS_PER_HOUR: f64 = 3_600_000.0;

/// Tuning of the engine. The defaults are what `docs/detection.md` measured.
#[derive(Debug, Clone)]
pub struct Options {
    /// Fewest raw samples in a segment for it to be judged.
    pub min_points: usize,
    /// One-sided significance of an upward trend.
    pub alpha: f64,
    /// The same for an allocation site.
    pub site_alpha: f64,
    /// Most sites named per heap finding.
    pub max_sites: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            min_points: 30,
            alpha: 1e-3,
            site_alpha: 1e-3,
            max_sites: 5,
        }
    }
}

/// What a series did over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Unbounded growth: a leak.
    Leak,
    /// Growth that slows toward a cap: a cache or pool filling up.
    Bounded,
    /// No significant growth.
    Flat,
    /// Too little data to say.
    InsufficientData,
}

/// The engine's judgement of one series.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub verdict: Verdict,
    pub reason: String,
    pub trend: Option<Trend>,
    /// Time (hours) when the judged growth began.
    pub started_h: Option<f64>,
    /// The floor now, from the fitted trend.
    pub current_floor: Option<f64>,
    /// How far peaks rise above the floor (95th percentile).
    pub headroom: f64,
    /// Segments that grew, of those judged.
    pub segments_growing: usize,
    pub segments_judged: usize,
}

impl Assessment {
    fn insufficient(reason: String) -> Self {
        Assessment {
            verdict: Verdict::InsufficientData,
            reason,
            trend: None,
            started_h: None,
            current_floor: None,
            headroom: 0.0,
            segments_growing: 0,
            segments_judged: 0,
        }
    }
}

struct SegmentFit {
    trend: Trend,
    growing: bool,
    decelerating: bool,
    start_h: f64,
    end_h: f64,
    headroom: f64,
}

fn fit_segment(pts: &[Pt], opts: &Options) -> std::result::Result<SegmentFit, String> {
    if pts.len() < opts.min_points {
        return Err(format!(
            "{} samples; need at least {}",
            pts.len(),
            opts.min_points
        ));
    }
    // Over windows of days, a daily cycle would read as growth or hide it.
    let deseasoned = heaptide_stats::remove_daily_cycle(pts);
    let pts = deseasoned.as_deref().unwrap_or(pts);
    let buckets = (pts.len() / 4).clamp(8, 48);
    let env = envelope(pts, buckets, Summary::Min);
    // Judge from the last level shift that leaves enough to judge; a shift
    // in the last few buckets (one more fd, say) is too recent to matter.
    let start = level_shifts(&env)
        .into_iter()
        .rev()
        .map(|i| i + 1)
        .find(|s| env.len() - s >= 8)
        .unwrap_or(0);
    let regime = &env[start..];
    let t = trend(regime).ok_or("too few points to fit")?;
    let third = regime.len() / 3;
    let first = trend(&regime[..third.max(4)]);
    let last = trend(&regime[regime.len() - third.max(4)..]);
    let decelerating = match (first, last) {
        (Some(f), Some(l)) => f.slope > 0.0 && l.hi < 0.5 * f.slope && l.slope < 0.35 * f.slope,
        _ => false,
    };
    let persistent = last.is_none_or(|l| l.slope > 0.0);
    let growing = t.p_up < opts.alpha && t.lo > 0.0 && !decelerating && persistent;
    // Peaks above the floor, over the regime's raw points.
    let start_h = regime[0].0 - (regime.get(1).map_or(0.0, |p| p.0) - regime[0].0) / 2.0;
    let mut above: Vec<f64> = pts
        .iter()
        .filter(|p| p.0 >= start_h)
        .map(|p| p.1 - t.at(p.0))
        .collect();
    above.sort_by(f64::total_cmp);
    let headroom = above
        .get(above.len() * 95 / 100)
        .copied()
        .unwrap_or(0.0)
        .max(0.0);
    Ok(SegmentFit {
        trend: t,
        growing,
        decelerating,
        start_h: start_h.max(pts[0].0),
        end_h: pts[pts.len() - 1].0,
        headroom,
    })
}

/// Judges one resource from its series, split at restarts. Times are in
/// hours; segments are in time order.
pub fn assess(segments: &[Vec<Pt>], opts: &Options) -> Assessment {
    let total: usize = segments.iter().map(Vec::len).sum();
    let fits: Vec<(usize, std::result::Result<SegmentFit, String>)> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| (i, fit_segment(s, opts)))
        .collect();
    let judged: Vec<&SegmentFit> = fits.iter().filter_map(|(_, f)| f.as_ref().ok()).collect();
    if judged.is_empty() {
        let why = fits
            .last()
            .and_then(|(_, f)| f.as_ref().err().cloned())
            .unwrap_or_default();
        return Assessment::insufficient(format!("{total} samples in the window: {why}"));
    }
    let growing: Vec<&&SegmentFit> = judged.iter().filter(|f| f.growing).collect();
    let last_is_judged = fits.last().is_some_and(|(_, f)| f.is_ok());
    let last = *judged.last().expect("non-empty");
    let mut a = Assessment {
        verdict: Verdict::Flat,
        reason: String::new(),
        trend: Some(last.trend),
        started_h: None,
        current_floor: Some(last.trend.at(last.end_h)),
        headroom: last.headroom,
        segments_growing: growing.len(),
        segments_judged: judged.len(),
    };
    if last_is_judged && last.growing {
        a.verdict = Verdict::Leak;
        a.started_h = Some(last.start_h);
        a.reason = "grows steadily".into();
        if growing.len() > 1 {
            a.reason = format!(
                "grows steadily, in {} of {} process lifetimes",
                growing.len(),
                judged.len()
            );
        }
    } else if growing.len() >= 2 && (!last_is_judged || growing.len() * 2 > judged.len()) {
        // Restarts keep each lifetime short; growth that recurs in most
        // lifetimes is a leak even when the newest one is too young to tell.
        let mut slopes: Vec<f64> = growing.iter().map(|f| f.trend.slope).collect();
        let mut los: Vec<f64> = growing.iter().map(|f| f.trend.lo).collect();
        let mut his: Vec<f64> = growing.iter().map(|f| f.trend.hi).collect();
        let mut t = growing[growing.len() - 1].trend;
        t.slope = super::stats::median(&mut slopes);
        t.lo = super::stats::median(&mut los);
        t.hi = super::stats::median(&mut his);
        t.p_up = growing.iter().map(|f| f.trend.p_up).fold(0.0, f64::max);
        a.verdict = Verdict::Leak;
        a.trend = Some(t);
        let seg = segments.last().expect("non-empty");
        let recent = &seg[seg.len().saturating_sub(5)..];
        a.current_floor = recent.iter().map(|p| p.1).reduce(f64::min);
        a.started_h = Some(growing[0].start_h);
        a.reason = format!(
            "grows again after each restart, in {} of {} process lifetimes",
            growing.len(),
            judged.len()
        );
    } else if last.decelerating {
        a.verdict = Verdict::Bounded;
        a.reason = "grows, but slows toward a ceiling (a cache or pool filling)".into();
    } else {
        a.reason = "no significant growth".into();
    }
    a
}

/// Time to exhaustion in hours, with bounds, for detected growth.
pub fn time_to_exhaustion(a: &Assessment, limit: f64) -> Option<(f64, f64, f64)> {
    if a.verdict != Verdict::Leak {
        return None;
    }
    let t = a.trend?;
    let peak = a.current_floor? + a.headroom;
    let room = (limit - peak).max(0.0);
    Some((
        room / t.slope,
        room / t.hi,
        room / t.lo.max(f64::MIN_POSITIVE),
    ))
}

/// One allocation site's growth.
#[derive(Debug, Clone, Serialize)]
pub struct SiteGrowth {
    pub stack_id: i64,
    pub slope_per_hour: f64,
    pub slope_ci: [f64; 2],
    /// Its share of the growth of all growing sites.
    pub share: f64,
    pub current_bytes: f64,
}

/// Finds the allocation sites whose live bytes grow. `series` maps a stack
/// to its (hours, bytes) points, one per profile (0 where absent);
/// `period` is the sampling period: a site's sampled bytes have a variance
/// of about `period * bytes`, so growth must clear that noise too.
pub fn assess_sites(
    series: &HashMap<i64, Vec<Pt>>,
    period: f64,
    opts: &Options,
) -> Vec<SiteGrowth> {
    let mut out = Vec::new();
    for (stack, pts) in series {
        if pts.len() < 8 || pts.iter().all(|p| p.1 <= 0.0) {
            continue;
        }
        // Few profiles are judged as they are: bucketing them would leave
        // too few points for the test to ever be significant.
        let env = if pts.len() <= 48 {
            pts.clone()
        } else {
            envelope(pts, 48, Summary::Median)
        };
        let Some(t) = trend(&env) else { continue };
        let span = env[env.len() - 1].0 - env[0].0;
        let mean = pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64;
        let sampling_sd = (period * mean.max(0.0)).sqrt();
        if t.p_up < opts.site_alpha && t.lo > 0.0 && t.slope * span > 3.0 * sampling_sd {
            out.push(SiteGrowth {
                stack_id: *stack,
                slope_per_hour: t.slope,
                slope_ci: [t.lo, t.hi],
                share: 0.0,
                current_bytes: t.at(env[env.len() - 1].0).max(0.0),
            });
        }
    }
    let total: f64 = out.iter().map(|s| s.slope_per_hour).sum();
    for s in &mut out {
        s.share = if total > 0.0 {
            s.slope_per_hour / total
        } else {
            0.0
        };
    }
    out.sort_by(|a, b| {
        b.slope_per_hour
            .total_cmp(&a.slope_per_hour)
            .then(a.stack_id.cmp(&b.stack_id))
    });
    out
}

/// The resources heaptide judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Heap,
    Rss,
    Fds,
    Threads,
    Sockets,
}

impl Resource {
    pub const ALL: [Resource; 5] = [
        Resource::Heap,
        Resource::Rss,
        Resource::Fds,
        Resource::Threads,
        Resource::Sockets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Resource::Heap => "heap",
            Resource::Rss => "rss",
            Resource::Fds => "fds",
            Resource::Threads => "threads",
            Resource::Sockets => "sockets",
        }
    }

    pub fn metric(self) -> &'static str {
        match self {
            Resource::Heap => metric::HEAP_ALLOCATED,
            Resource::Rss => metric::RSS,
            Resource::Fds => metric::FDS,
            Resource::Threads => metric::THREADS,
            Resource::Sockets => metric::TCP,
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Resource::Heap | Resource::Rss => "bytes",
            Resource::Fds => "fds",
            Resource::Threads => "threads",
            Resource::Sockets => "sockets",
        }
    }

    pub fn parse(s: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.name() == s)
    }

    /// Per-kind series that say what grows: fd kinds and TCP states.
    fn detail_prefix(self) -> Option<(&'static str, &'static str)> {
        match self {
            Resource::Fds => Some((metric::FDS_KIND_PREFIX, "fd_kind")),
            Resource::Sockets => Some((metric::TCP_STATE_PREFIX, "tcp_state")),
            _ => None,
        }
    }

    /// Candidate limits, the first present wins; `None` means the smallest.
    fn limits(self) -> (&'static [(&'static str, &'static str)], bool) {
        const MEMORY: &[(&str, &str)] = &[
            (metric::LIMIT_MEMORY_MAX, "cgroup memory.max"),
            (metric::LIMIT_AS, "RLIMIT_AS"),
            (metric::LIMIT_PHYSICAL_MEMORY, "physical memory"),
        ];
        const FDS: &[(&str, &str)] = &[(metric::LIMIT_NOFILE_SOFT, "RLIMIT_NOFILE")];
        const THREADS: &[(&str, &str)] = &[
            (metric::LIMIT_PIDS_MAX, "cgroup pids.max"),
            (metric::LIMIT_NPROC, "RLIMIT_NPROC"),
            (metric::LIMIT_THREADS_MAX, "kernel threads-max"),
        ];
        match self {
            Resource::Heap | Resource::Rss => (MEMORY, false),
            Resource::Fds | Resource::Sockets => (FDS, false),
            Resource::Threads => (THREADS, true),
        }
    }
}

/// A frame of a named site.
#[derive(Debug, Clone, Serialize)]
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
}

/// The judgement of one resource of one instance, as `leaks` and `predict`
/// print it (`docs/cli.md`).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub service: String,
    pub instance: String,
    pub resource: Resource,
    pub metric: String,
    pub unit: &'static str,
    pub verdict: Verdict,
    pub reason: String,
    pub slope_per_hour: Option<f64>,
    pub slope_ci: Option<[f64; 2]>,
    pub confidence: Option<f64>,
    pub started_ms: Option<i64>,
    pub current: Option<f64>,
    pub limit: Option<f64>,
    pub limit_source: Option<&'static str>,
    pub time_to_exhaustion_seconds: Option<f64>,
    pub time_to_exhaustion_bounds_seconds: Option<[f64; 2]>,
    /// What grows inside the resource: `{"fd_kind": "file"}` or `{"tcp_state": "close_wait"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<HashMap<&'static str, String>>,
    pub instances_growing: usize,
    pub instances: usize,
    pub sites: Vec<Site>,
}

/// What to analyze.
#[derive(Debug, Clone)]
pub struct Query {
    pub service: Option<String>,
    pub instance: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub from_ms: i64,
    pub to_ms: i64,
    /// Every resource of every instance, worst first.
    pub findings: Vec<Finding>,
}

impl Analysis {
    /// Only the leaks: what `analyzer leaks` reports.
    pub fn leaks(mut self) -> Analysis {
        self.findings.retain(|f| f.verdict == Verdict::Leak);
        self
    }
}

fn to_h(ms: i64) -> f64 {
    ms as f64 / MS_PER_HOUR
}

/// Points of one metric of one instance, split by segment.
fn segmented(store: &dyn Store, sel: &Selector, metric: &str) -> Result<Vec<Vec<Pt>>> {
    let mut segs: Vec<(i64, Vec<Pt>)> = Vec::new();
    for p in store.series(sel, metric)? {
        match segs.last_mut() {
            Some((id, pts)) if *id == p.segment => pts.push((to_h(p.ts_ms), p.min)),
            _ => segs.push((p.segment, vec![(to_h(p.ts_ms), p.min)])),
        }
    }
    segs.sort_by(|a, b| a.1[0].0.total_cmp(&b.1[0].0));
    Ok(segs.into_iter().map(|(_, p)| p).collect())
}

fn latest(store: &dyn Store, sel: &Selector, metric: &str) -> Result<Option<f64>> {
    Ok(store.latest(sel, metric)?.map(|p| p.value))
}

/// Runs the engine over every resource of every matching instance.
pub fn analyze(store: &dyn Store, q: &Query, opts: &Options) -> Result<Analysis> {
    let mut findings = Vec::new();
    let instances = store.instances(q.service.as_deref())?;
    for inst in instances
        .iter()
        .filter(|i| q.instance.as_deref().is_none_or(|x| x == i.instance))
    {
        let sel = Selector {
            service: inst.service.clone(),
            instance: Some(inst.instance.clone()),
            from_ms: q.from_ms,
            to_ms: q.to_ms,
        };
        let names = store.metric_names(&inst.service, Some(&inst.instance))?;
        for r in Resource::ALL {
            findings.push(judge(store, &sel, &names, r, opts)?);
        }
    }
    // Corroboration across the instances of a service.
    let mut growing: HashMap<(String, Resource), (usize, usize)> = HashMap::new();
    for f in &findings {
        let e = growing.entry((f.service.clone(), f.resource)).or_default();
        if f.verdict != Verdict::InsufficientData {
            e.1 += 1;
        }
        if f.verdict == Verdict::Leak {
            e.0 += 1;
        }
    }
    for f in &mut findings {
        let (g, n) = growing[&(f.service.clone(), f.resource)];
        f.instances_growing = g;
        f.instances = n;
        if let (Some(c), Verdict::Leak) = (f.confidence, f.verdict) {
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
    findings.sort_by(|a, b| rank(a).total_cmp(&rank(b)));
    Ok(Analysis {
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        findings,
    })
}

/// Sort key, worst first: leaks by time to exhaustion, then the rest.
fn rank(f: &Finding) -> f64 {
    match f.verdict {
        Verdict::Leak => f.time_to_exhaustion_seconds.unwrap_or(1e15),
        Verdict::Bounded => 2e15,
        Verdict::Flat => 3e15,
        Verdict::InsufficientData => 4e15,
    }
}

fn judge(
    store: &dyn Store,
    sel: &Selector,
    names: &[String],
    r: Resource,
    opts: &Options,
) -> Result<Finding> {
    let segs = segmented(store, sel, r.metric())?;
    let a = if segs.is_empty() {
        Assessment::insufficient(format!("no {} samples in the window", r.metric()))
    } else {
        assess(&segs, opts)
    };
    let (limit, limit_source) = limit_of(store, sel, r)?;
    let mut f = Finding {
        service: sel.service.clone(),
        instance: sel.instance.clone().unwrap_or_default(),
        resource: r,
        metric: r.metric().to_owned(),
        unit: r.unit(),
        verdict: a.verdict,
        reason: a.reason.clone(),
        slope_per_hour: a.trend.map(|t| t.slope),
        slope_ci: a.trend.map(|t| [t.lo, t.hi]),
        confidence: a.trend.map(|t| (1.0 - t.p_up).clamp(0.0, 0.9999)),
        started_ms: a.started_h.map(|h| (h * MS_PER_HOUR) as i64),
        current: segs.last().and_then(|s| s.last()).map(|p| p.1),
        limit,
        limit_source,
        time_to_exhaustion_seconds: None,
        time_to_exhaustion_bounds_seconds: None,
        detail: None,
        instances_growing: 0,
        instances: 0,
        sites: Vec::new(),
    };
    if let Some((mid, lo, hi)) = limit.and_then(|l| time_to_exhaustion(&a, l)) {
        f.time_to_exhaustion_seconds = Some(mid * 3600.0);
        f.time_to_exhaustion_bounds_seconds = Some([lo * 3600.0, hi * 3600.0]);
    }
    if a.verdict != Verdict::Leak {
        return Ok(f);
    }
    if let Some((prefix, key)) = r.detail_prefix() {
        let mut best: Option<(f64, String)> = None;
        for name in names
            .iter()
            .filter(|n| n.starts_with(prefix) && n.as_str() != r.metric())
        {
            let segs = segmented(store, sel, name)?;
            let sub = assess(&segs, opts);
            if let (Verdict::Leak, Some(t)) = (sub.verdict, sub.trend) {
                if best.as_ref().is_none_or(|(s, _)| t.slope > *s) {
                    best = Some((t.slope, name[prefix.len()..].to_owned()));
                }
            }
        }
        if let Some((_, what)) = best {
            f.detail = Some(HashMap::from([(key, what)]));
        }
    }
    if r == Resource::Heap {
        let from = f.started_ms.unwrap_or(sel.from_ms).max(sel.from_ms);
        f.sites = growing_sites(
            store,
            &Selector {
                from_ms: from,
                ..sel.clone()
            },
            opts,
        )?;
    }
    Ok(f)
}

fn limit_of(
    store: &dyn Store,
    sel: &Selector,
    r: Resource,
) -> Result<(Option<f64>, Option<&'static str>)> {
    let (candidates, smallest) = r.limits();
    let mut best: Option<(f64, &'static str)> = None;
    for (m, source) in candidates {
        if let Some(v) = latest(store, sel, m)? {
            // A cgroup limit above physical memory means "none".
            if *m == metric::LIMIT_MEMORY_MAX || *m == metric::LIMIT_AS {
                if let Some(phys) = latest(store, sel, metric::LIMIT_PHYSICAL_MEMORY)? {
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
    Ok((best.map(|b| b.0), best.map(|b| b.1)))
}

/// Names the growing allocation sites from the profiles in `sel`.
pub fn growing_sites(store: &dyn Store, sel: &Selector, opts: &Options) -> Result<Vec<Site>> {
    let points = store.site_points(sel)?;
    let profiles = store.profiles(sel)?;
    if profiles.len() < 8 {
        return Ok(Vec::new());
    }
    // Only the latest segment: stacks of two processes do not add up.
    let segment = profiles.last().map(|p| p.segment);
    let profiles: Vec<_> = profiles
        .into_iter()
        .filter(|p| Some(p.segment) == segment)
        .collect();
    let times: HashMap<i64, f64> = profiles.iter().map(|p| (p.id, to_h(p.ts_ms))).collect();
    let period = profiles
        .last()
        .map_or(524_288.0, |p| p.sample_period_bytes as f64);
    let mut series: HashMap<i64, HashMap<i64, f64>> = HashMap::new();
    for p in points.iter().filter(|p| times.contains_key(&p.profile_id)) {
        series
            .entry(p.stack_id)
            .or_default()
            .insert(p.profile_id, p.bytes as f64);
    }
    let series: HashMap<i64, Vec<Pt>> = series
        .into_iter()
        .map(|(stack, by)| {
            let pts = profiles
                .iter()
                .map(|p| (times[&p.id], by.get(&p.id).copied().unwrap_or(0.0)))
                .collect();
            (stack, pts)
        })
        .collect();
    let growth = assess_sites(&series, period, opts);
    let top: Vec<_> = growth.into_iter().take(opts.max_sites).collect();
    let ids: Vec<i64> = top.iter().map(|s| s.stack_id).collect();
    let frames: HashMap<i64, Vec<heaptide_wire::pprof::Frame>> =
        store.stacks(&ids)?.into_iter().collect();
    Ok(top
        .into_iter()
        .map(|g| {
            let fr = frames.get(&g.stack_id).cloned().unwrap_or_default();
            let app = fr.iter().position(|f| !is_runtime_frame(&f.function));
            Site {
                stack_id: g.stack_id,
                app_location: app.and_then(|i| {
                    let f = &fr[i];
                    (!f.file.is_empty()).then(|| format!("{}:{}", f.file, f.line))
                }),
                frames: fr.into_iter().map(|f| f.function).collect(),
                app_frame: app,
                slope_per_hour: g.slope_per_hour,
                slope_ci: g.slope_ci,
                share: g.share,
                current_bytes: g.current_bytes,
            }
        })
        .collect())
}

pub use heaptide_wire::pprof::is_runtime_frame;

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: &mut u64) -> f64 {
        let mut s = 0.0;
        for _ in 0..12 {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s += ((*seed >> 11) as f64) / ((1u64 << 53) as f64);
        }
        s - 6.0
    }

    fn series(n: usize, f: impl Fn(f64) -> f64) -> Vec<Pt> {
        (0..n)
            .map(|i| {
                let t = i as f64 / 60.0;
                (t, f(t))
            })
            .collect()
    }

    #[test]
    fn linear_growth_is_a_leak_with_a_runway() {
        let mut seed = 1;
        let s = series(600, |t| 1000.0 + 50.0 * t + 5.0 * noise(&mut seed.clone()));
        let _ = &mut seed;
        let a = assess(&[s], &Options::default());
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
        let (mid, lo, hi) = time_to_exhaustion(&a, 2000.0).unwrap();
        // At 10 h the level is 1500: 500 more at 50/h is 10 h.
        assert!((mid - 10.0).abs() < 1.5, "{mid}");
        assert!(lo <= mid && mid <= hi);
    }

    #[test]
    fn sawtooth_with_flat_troughs_is_not_a_leak() {
        let s = series(600, |t| 1000.0 + ((t * 60.0) as usize % 30) as f64 * 20.0);
        assert_ne!(assess(&[s], &Options::default()).verdict, Verdict::Leak);
    }

    #[test]
    fn warm_up_to_a_plateau_is_bounded_not_a_leak() {
        let s = series(600, |t| 1000.0 + 500.0 * (1.0 - (-t / 2.0).exp()));
        let a = assess(&[s], &Options::default());
        assert_ne!(a.verdict, Verdict::Leak, "{}", a.reason);
    }

    #[test]
    fn a_step_at_a_deploy_is_not_a_leak() {
        let mut seed = 9;
        let s: Vec<Pt> = series(600, |t| if t < 6.0 { 1000.0 } else { 1400.0 })
            .into_iter()
            .map(|(t, v)| (t, v + noise(&mut seed)))
            .collect();
        let a = assess(&[s], &Options::default());
        assert_eq!(a.verdict, Verdict::Flat, "{}", a.reason);
    }

    #[test]
    fn too_little_data_says_so() {
        let a = assess(&[series(10, |t| t)], &Options::default());
        assert_eq!(a.verdict, Verdict::InsufficientData);
        assert!(a.reason.contains("10 samples"), "{}", a.reason);
    }

    #[test]
    fn runtime_frames_are_recognised() {
        assert!(is_runtime_frame("alloc::raw_vec::finish_grow"));
        assert!(is_runtime_frame("<alloc::vec::Vec<u8>>::with_capacity"));
        assert!(!is_runtime_frame("leaky_service::leak_request_buffer"));
        assert!(is_runtime_frame(
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem"
        ));
        assert!(is_runtime_frame("<[u8]>::to_vec"));
        assert!(!is_runtime_frame(
            "<leaky_service::Entry as core::clone::Clone>::clone"
        ));
    }
}
