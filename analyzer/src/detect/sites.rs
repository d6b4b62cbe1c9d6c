//! Naming the allocation sites that explain heap growth, from the heap
//! profiles the store holds.

use std::collections::HashMap;

use super::stats::Pt;
use super::{assess_sites, to_h, Options, Site};
use crate::error::Result;
use crate::select::Selector;
use crate::store::Store;
use heaptide_wire::pprof::is_runtime_frame;

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
                frames: fr.into_iter().map(|f| f.function.to_string()).collect(),
                app_frame: app,
                slope_per_hour: g.slope_per_hour,
                slope_ci: g.slope_ci,
                share: g.share,
                current_bytes: g.current_bytes,
            }
        })
        .collect())
}
