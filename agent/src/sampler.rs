//! The sampler thread: reads resources every interval and takes a heap
//! profile every profile interval.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;
use heaptide_wire::pprof::{build_native_heap_profile, encode_gzip, ProfileSample};
use heaptide_wire::{metric, EncodedProfile, HeapProfilingStatus, MetricSample, StackAges};

use crate::cadence::{profile_times, Cadence};
use crate::config::Config;
use crate::jemalloc::{self, ProfilingState};
use crate::process::{Metrics, ProcessSampler};
use crate::queue::Item;
use crate::runtime::Shared;
use crate::symbolize::Symbolizer;
use crate::thin;

/// Most resolved addresses kept; about 100 bytes each plus names.
const SYMBOL_CACHE_ENTRIES: usize = 32 * 1024;

/// Checks whether profiles can be taken and applies the sampling period.
pub(crate) fn init_profiling(config: &Config) -> HeapProfilingStatus {
    let off = |reason: String| HeapProfilingStatus {
        enabled: false,
        reason: Some(reason),
        sample_period_bytes: None,
        unwinder: None,
        unnamed_objects: Vec::new(),
    };
    if let ProfilingState::Off(reason) = jemalloc::profiling_state() {
        return off(reason);
    }
    let period = match jemalloc::set_sample_period(config.heap_sample_period) {
        Ok(period) => period,
        Err(e) => return off(e.to_string()),
    };
    if let Err(e) = crate::age::install() {
        tracing::warn!("heaptide: live memory will have no ages: {e}");
    }
    // A failed install leaves jemalloc's own unwinder, which works.
    let unwinder = crate::unwind::install(config.unwinder).unwrap_or_else(|e| {
        tracing::warn!("heaptide: keeping jemalloc's unwinder: {e}");
        crate::Unwinder::Libgcc
    });
    HeapProfilingStatus {
        enabled: true,
        reason: None,
        sample_period_bytes: Some(period),
        unwinder: Some(unwinder.as_str().into()),
        unnamed_objects: match config.symbolize {
            crate::Symbolize::Analyzer => crate::objects::build_ids(),
            crate::Symbolize::Agent => Vec::new(),
        },
    }
}

pub(crate) fn run(shared: &Shared) {
    let cfg = &shared.config;
    let mut procs = ProcessSampler::new();
    let mut symbols = Symbolizer::new(SYMBOL_CACHE_ENTRIES, cfg.symbol_lines, cfg.symbolize);
    let start = Instant::now();
    let mut cadence = Cadence::new(cfg.interval, start);
    let mut pressure = crate::pressure::Pressure::new(cfg.pressure_share);
    let mut profiles = profile_times(cfg.profile_interval).map(|d| start + d);
    let mut next_sample = start;
    let mut next_profile = profiles.next().unwrap_or(start + cfg.profile_interval);
    loop {
        let now = Instant::now();
        let next = next_sample.min(next_profile);
        if next > now {
            shared.sleep_unless_stopping(next - now);
        }
        let stopping = shared.stopping.load(Ordering::Relaxed);
        let now = Instant::now();
        let mut short_of_memory = false;
        if now >= next_sample || stopping {
            guarded("sample", || {
                let (items, pressed) = sample(shared, &mut procs, &mut cadence, &mut pressure, now);
                short_of_memory = pressed;
                shared.queue.push_all(items);
            });
            next_sample = advance(next_sample, cadence.next_delay(now), now);
        }
        // Memory runs short: the profile that explains it, now.
        if short_of_memory && !stopping {
            guarded("pressure profile", || {
                if let Some(p) = profile(shared, &mut symbols) {
                    shared.queue.push_all([Item::Profile(p)]);
                }
            });
        }
        let early = shared.profile_soon.swap(false, Ordering::Relaxed);
        // Until the analyzer has what names this process's addresses, or
        // a short while has passed, profiles wait: taken before, they
        // would be stored unnamed.
        let waiting = !shared.symbols_ready.load(Ordering::Relaxed)
            && now.duration_since(start) < crate::upload::NAMES_WAIT;
        if (now >= next_profile || early) && !stopping && !waiting {
            guarded("profile", || {
                if let Some(p) = profile(shared, &mut symbols) {
                    shared.queue.push_all([Item::Profile(p)]);
                }
            });
            // Missed profiles are skipped rather than taken in a burst.
            next_profile = profiles
                .by_ref()
                .find(|t| *t > now)
                .unwrap_or(now + cfg.profile_interval);
        }
        shared.thread_costs.sampler.update();
        if stopping {
            shared.queue.close();
            return;
        }
    }
}

/// Live bytes by age for each stack of `raw` the age table knows.
fn ages(raw: &[jemalloc::RawStack], period: u64) -> Vec<StackAges> {
    let (by_site, _) = crate::age::by_site(period);
    if by_site.is_empty() {
        return Vec::new();
    }
    raw.iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let bytes = *by_site.get(&crate::age::site_of(r.addrs.iter().copied()))?;
            Some(StackAges {
                sample: u32::try_from(i).ok()?,
                bytes,
            })
        })
        .collect()
}

/// The dump's stacks with what each allocated since the previous profile,
/// and the stacks that allocated but hold nothing live now after them.
fn with_allocs(
    mut raw: Vec<jemalloc::RawStack>,
    allocs: Vec<crate::allocs::StackAllocs>,
) -> Vec<jemalloc::RawStack> {
    let index: HashMap<u64, usize> = raw
        .iter()
        .enumerate()
        .map(|(i, r)| (crate::age::site_of(r.addrs.iter().copied()), i))
        .collect();
    for a in allocs {
        let at = match index.get(&a.site) {
            Some(&i) => &mut raw[i],
            None => {
                raw.push(jemalloc::RawStack {
                    addrs: a.addrs,
                    ..Default::default()
                });
                raw.last_mut().expect("just pushed")
            }
        };
        at.alloc_objects += a.objects;
        at.alloc_bytes += a.bytes;
    }
    raw
}

/// Keeps a fixed cadence, but skips missed ticks rather than bursting.
fn advance(prev: Instant, every: Duration, now: Instant) -> Instant {
    let next = prev + every;
    if next <= now {
        now + every
    } else {
        next
    }
}

fn guarded(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!("heaptide: taking a {what} panicked; skipped");
    }
}

/// One sample's items, and whether memory runs short enough for a heap
/// profile now ([`crate::pressure`]).
fn sample(
    shared: &Shared,
    procs: &mut ProcessSampler,
    cadence: &mut Cadence,
    pressure: &mut crate::pressure::Pressure,
    now: Instant,
) -> (Vec<Item>, bool) {
    let mut m = Metrics::new();
    if let Err(e) = jemalloc::read_stats(&mut m) {
        tracing::debug!("heaptide: {e}");
    }
    procs.sample(&mut m);
    let pressed = pressure.observe(now, &mut m);
    if shared.stopping.load(Ordering::Relaxed) {
        m.insert(metric::AGENT_STOPPING.into(), 1.0);
    }
    let urgent = cadence.observe(now, &m);
    m.insert(metric::AGENT_URGENT.into(), f64::from(u8::from(urgent)));
    m.insert(
        metric::AGENT_INTERVAL_SECONDS.into(),
        shared.config.interval.as_secs_f64(),
    );
    let (events, meter, tokio) = shared.pauses.drain();
    if let Some(p) = meter {
        m.insert(metric::PAUSE_P50_MS.into(), p.p50);
        m.insert(metric::PAUSE_P99_MS.into(), p.p99);
        m.insert(metric::PAUSE_P999_MS.into(), p.p999);
        m.insert(metric::PAUSE_MAX_MS.into(), p.max);
    }
    if let Some(p) = tokio {
        m.insert(metric::TOKIO_LAG_P99_MS.into(), p.p99);
        m.insert(metric::TOKIO_LAG_MAX_MS.into(), p.max);
    }
    crate::gauges::sample(&mut m);
    #[cfg(feature = "tokio")]
    crate::tokio_probe::sample(&mut m);
    let requests = crate::runtime::REQUESTS.load(Ordering::Relaxed);
    if requests > 0 {
        m.insert(metric::REQUESTS.into(), requests as f64);
    }
    let stats = shared.agent_stats();
    m.insert("agent.cpu_seconds".into(), stats.cpu_seconds);
    m.insert("agent.heap_bytes".into(), stats.heap_bytes as f64);
    m.insert("agent.dropped_items".into(), stats.dropped_items as f64);
    if let Some(n) = crate::age::untracked() {
        m.insert("agent.ages_untracked".into(), n as f64);
    }
    if let Some(n) = crate::allocs::total_bytes() {
        m.insert(metric::HEAP_ALLOC_BYTES.into(), n as f64);
    }
    if let Some(n) = crate::allocs::untracked() {
        m.insert("agent.allocs_untracked".into(), n as f64);
    }
    let mut items = Vec::with_capacity(events.len() + 1);
    items.push(Item::Metrics(MetricSample {
        ts_ms: crate::runtime::now_ms(),
        metrics: m,
    }));
    items.extend(events.into_iter().map(Item::Pause));
    (items, pressed)
}

fn profile(shared: &Shared, symbols: &mut Symbolizer) -> Option<EncodedProfile> {
    if !shared.heap_profiling_status().enabled {
        return None;
    }
    let ts_ms = crate::runtime::now_ms();
    let (period, raw) = match jemalloc::dump() {
        Ok(d) => d,
        Err(e) => {
            shared.profile_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("heaptide: heap profile failed: {e}");
            return None;
        }
    };
    let raw = with_allocs(raw, crate::allocs::take());
    symbols.prepare(raw.iter().flat_map(|r| r.addrs.iter().copied()));
    let (addresses, stacks): (Vec<Vec<u64>>, Vec<ProfileSample>) = raw
        .iter()
        .map(|r| {
            let (at, frames) = symbols.stack(&r.addrs);
            let sample = ProfileSample {
                frames,
                objects: r.objects as i64,
                bytes: r.bytes as i64,
                alloc_objects: r.alloc_objects as i64,
                alloc_bytes: r.alloc_bytes as i64,
            };
            (at, sample)
        })
        .unzip();
    let mut parts = thin::Parts {
        stacks,
        addresses,
        ages: ages(&raw, period),
    };
    drop(raw);
    let encode = |parts: &thin::Parts| encode(shared, parts, period, ts_ms);
    let mut p = encode(&parts);
    // A few rounds at most: each keeps a share of the stacks sized to fit.
    for _ in 0..4 {
        let size = crate::queue::profile_size(&p);
        if size <= thin::MAX_PROFILE_BYTES {
            return Some(p);
        }
        let keep = thin::stacks_to_keep(parts.stacks.len(), size, thin::MAX_PROFILE_BYTES);
        tracing::debug!(
            size,
            keep,
            "heaptide: heap profile over the batch limit; folding its smallest stacks"
        );
        parts = thin::fold_smallest(&parts, keep);
        p = encode(&parts);
    }
    shared.profile_failures.fetch_add(1, Ordering::Relaxed);
    tracing::warn!("heaptide: heap profile stays over the batch limit; skipped");
    None
}

/// Encodes a profile's parts as sent.
fn encode(shared: &Shared, parts: &thin::Parts, period: u64, ts_ms: i64) -> EncodedProfile {
    let mappings = crate::objects::mappings(&crate::objects::loaded());
    let pprof = build_native_heap_profile(
        &parts.stacks,
        &parts.addresses,
        &mappings,
        shared.config.symbol_lines,
        period as i64,
        ts_ms * 1_000_000,
    );
    EncodedProfile {
        ts_ms,
        sample_period_bytes: period,
        pprof_gz_base64: base64::engine::general_purpose::STANDARD.encode(encode_gzip(&pprof)),
        ages: parts.ages.clone(),
    }
}
