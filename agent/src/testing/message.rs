//! The failure message: what grew, by how much, and the allocation sites
//! that explain it, when the evidence resolves them.

use std::fmt;

use super::{Growth, LeakReport, CHECK_SAMPLE_PERIOD};
use crate::jemalloc;
use crate::symbolize::Symbolizer;

/// A growing allocation site, for the failure message.
#[derive(Debug, Clone)]
pub struct GrowingSite {
    pub bytes: i64,
    /// `function (file:line)`, leaf first, without allocator frames.
    pub frames: Vec<String>,
}

/// Whether sampled growth of `delta` bytes at a site holding `after`
/// stands clear of sampling noise: jemalloc's estimate of a site's live
/// bytes has a variance of about the sample period times those bytes.
fn resolved(delta: i64, after: i64) -> bool {
    let period = CHECK_SAMPLE_PERIOD as f64;
    delta as f64 > 3.0 * (period * (after as f64).max(period)).sqrt()
}

/// The sites whose sampled live bytes grew across the run, when the
/// evidence resolves them; none when the run grew `grew` bytes, too few
/// for sampling at the check's period to tell where.
pub(super) fn growing_sites(
    before: &(u64, Vec<jemalloc::RawStack>),
    tag: &str,
    grew: f64,
) -> Vec<GrowingSite> {
    if grew < 8.0 * CHECK_SAMPLE_PERIOD as f64 {
        return Vec::new();
    }
    let Ok(after) = jemalloc::dump_for(Some(tag)) else {
        return Vec::new();
    };
    // (growth, bytes held at the end) per stack.
    let mut delta: std::collections::HashMap<&[u64], (i64, i64)> = std::collections::HashMap::new();
    for s in &after.1 {
        let e = delta.entry(&s.addrs).or_default();
        e.0 += s.bytes as i64;
        e.1 += s.bytes as i64;
    }
    for s in &before.1 {
        delta.entry(&s.addrs).or_default().0 -= s.bytes as i64;
    }
    let mut grown: Vec<(&[u64], i64)> = delta
        .into_iter()
        .filter(|(_, (d, after))| resolved(*d, *after))
        .map(|(a, (d, _))| (a, d))
        .collect();
    grown.sort_by_key(|g| std::cmp::Reverse(g.1));
    grown.truncate(5);
    let mut symbols = Symbolizer::new(4096, true, crate::Symbolize::Agent);
    symbols.prepare(grown.iter().flat_map(|(a, _)| a.iter().copied()));
    grown
        .into_iter()
        .map(|(addrs, bytes)| GrowingSite {
            bytes,
            frames: symbols
                .stack(addrs)
                .1
                .into_iter()
                .filter(|f| !heaptide_wire::pprof::is_runtime_frame(&f.function))
                .take(8)
                .map(|f| {
                    if f.file.is_empty() {
                        f.function.to_string()
                    } else {
                        format!("{} ({}:{})", f.function, f.file, f.line)
                    }
                })
                .collect(),
        })
        .collect()
}

fn human_bytes(b: f64) -> String {
    if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1048576.0)
    } else if b.abs() >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

pub(super) fn leak_message(r: &LeakReport, sites: &[GrowingSite]) -> String {
    let mut m = format!(
        "heaptide leak check {:?} failed over {} iterations:",
        r.name, r.iterations
    );
    let line = |m: &mut String, what: &str, g: &Growth, fmt: &dyn Fn(f64) -> String| {
        use fmt::Write;
        let verdict = if g.exceeded() { "over budget" } else { "ok" };
        let _ = write!(
            m,
            "\n  {what}: {} per iteration ({} to {}, 99.9%), budget {}: {verdict}",
            fmt(g.slope),
            fmt(g.lo),
            fmt(g.hi),
            fmt(g.budget)
        );
    };
    line(&mut m, "heap", &r.bytes_per_iter, &human_bytes);
    if let Some(g) = &r.alloc_per_iter {
        line(&mut m, "allocated", g, &human_bytes);
    }
    let count = |v: f64| format!("{v:.2}");
    if let Some(g) = &r.fds_per_iter {
        line(&mut m, "fds", g, &count);
    }
    if let Some(g) = &r.threads_per_iter {
        line(&mut m, "threads", g, &count);
    }
    if r.bytes_per_iter.exceeded() {
        if sites.is_empty() {
            let grew = r.bytes_per_iter.slope * r.iterations as f64;
            let needed =
                (8.0 * CHECK_SAMPLE_PERIOD as f64 / r.bytes_per_iter.slope.max(1.0)).ceil();
            m.push_str(&format!(
                "\n  the growing allocation sites cannot be named: the run left {} behind, too little for heap samples every {} to resolve (or heap profiling is off). Run about {needed:.0} iterations, or lower the period for this test binary (MALLOC_CONF=prof:true,lg_prof_sample:10)",
                human_bytes(grew),
                human_bytes(CHECK_SAMPLE_PERIOD as f64)
            ));
        } else {
            m.push_str("\n  growing allocation sites (heap profile diff across the run):");
            for (i, s) in sites.iter().enumerate() {
                m.push_str(&format!("\n  {}. +{}", i + 1, human_bytes(s.bytes as f64)));
                for (j, f) in s.frames.iter().enumerate() {
                    m.push_str(&format!("\n       {}{f}", if j == 0 { "" } else { "<- " }));
                }
            }
        }
    }
    m
}
