//! Naming the allocation sites that explain heap growth, from the heap
//! profiles the store holds.

use std::collections::HashMap;

use super::stats::Pt;
use super::{assess_sites, to_h, Options, Site};
use crate::error::Result;
use crate::select::Selector;
use crate::store::Store;
use heaptide_wire::pprof::is_runtime_frame;
use heaptide_wire::AGE_BUCKETS_SECS;

/// Names the growing allocation sites from the profiles in `sel`.
pub(crate) fn growing_sites(
    store: &dyn Store,
    sel: &Selector,
    opts: &Options,
) -> Result<Vec<Site>> {
    sites_from(store, sel, store.profiles(sel)?, opts)
}

/// Names the sites of each finding of `findings` at the index `needs`
/// gives, over the window its selector gives (one instance's each, of
/// one service): the profiles of all in one read, then each alone.
pub(crate) fn name_sites(
    store: &dyn Store,
    findings: &mut [super::Finding],
    needs: &[(usize, Selector)],
    opts: &Options,
) -> Result<()> {
    let Some(service) = needs.first().and_then(|(_, s)| s.service.clone()) else {
        return Ok(());
    };
    let from = needs.iter().map(|(_, s)| s.from_ms).min().unwrap_or(0);
    let to = needs.iter().map(|(_, s)| s.to_ms).max().unwrap_or(0);
    let names: Vec<&str> = needs
        .iter()
        .filter_map(|(_, s)| s.instance.as_deref())
        .collect();
    let sel = Selector::all(from, to).for_service(&service);
    let mut profiles = store.profiles_of(&sel, &names)?;
    for (i, sel) in needs {
        let Some(instance) = sel.instance.as_deref() else {
            continue;
        };
        let mine: Vec<_> = profiles
            .remove(instance)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.ts_ms >= sel.from_ms && p.ts_ms <= sel.to_ms)
            .collect();
        if let Some(f) = findings.get_mut(*i) {
            f.sites = sites_from(store, sel, mine, opts)?;
        }
    }
    Ok(())
}

/// [`growing_sites`] from `profiles`, those of `sel`.
fn sites_from(
    store: &dyn Store,
    sel: &Selector,
    profiles: Vec<crate::store::StoredProfile>,
    opts: &Options,
) -> Result<Vec<Site>> {
    if profiles.len() < 8 {
        return Ok(Vec::new());
    }
    let points = store.site_points(sel)?;
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
    let (first, last) = match (profiles.first(), profiles.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return Ok(Vec::new()),
    };
    let ages = store.profile_ages(last.id)?;
    let horizon_s = ((last.ts_ms - first.ts_ms) / 2000).max(0) as u64;
    let old_share = |id: i64| ages.get(&id).and_then(|a| old_share(a, horizon_s));
    let top = rank_old_first(growth, old_share, opts.max_sites);
    let ids: Vec<i64> = top.iter().map(|s| s.0.stack_id).collect();
    let frames: HashMap<i64, Vec<heaptide_wire::pprof::Frame>> =
        store.stacks(&ids)?.into_iter().collect();
    Ok(top
        .into_iter()
        .map(|(g, old_share)| {
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
                ages: ages.get(&g.stack_id).copied(),
                old_share,
            }
        })
        .collect())
}

/// The share of `ages`' bytes in buckets that begin at or after the
/// latest bucket edge below `horizon_s`: memory that has certainly lived
/// that long. `None` without bytes.
pub fn old_share(ages: &crate::store::Ages, horizon_s: u64) -> Option<f64> {
    let total: u64 = ages.iter().sum();
    if total == 0 {
        return None;
    }
    // Bucket i covers [edge(i-1), edge(i)); its lower edge is 0 for i = 0.
    let lower = |i: usize| if i == 0 { 0 } else { AGE_BUCKETS_SECS[i - 1] };
    let from = (0..ages.len())
        .rev()
        .find(|&i| lower(i) <= horizon_s)
        .unwrap_or(0)
        .max(1);
    let old: u64 = ages[from..].iter().sum();
    Some(old as f64 / total as f64)
}

/// Growing sites ranked by growth weighted by age: memory that is old and
/// still accumulating is a leak's signature, so a site whose live bytes
/// are all old counts up to twice its growth, one whose bytes all churn
/// counts its growth alone. Sites without ages keep their growth.
fn rank_old_first(
    growth: Vec<super::assess::SiteGrowth>,
    old_share: impl Fn(i64) -> Option<f64>,
    max: usize,
) -> Vec<(super::assess::SiteGrowth, Option<f64>)> {
    let mut ranked: Vec<_> = growth
        .into_iter()
        .map(|g| {
            let old = old_share(g.stack_id);
            (g, old)
        })
        .collect();
    let score = |(g, old): &(super::assess::SiteGrowth, Option<f64>)| {
        g.slope_per_hour * (1.0 + old.unwrap_or(0.0))
    };
    ranked.sort_by(|a, b| {
        score(b)
            .total_cmp(&score(a))
            .then(a.0.stack_id.cmp(&b.0.stack_id))
    });
    ranked.truncate(max);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::assess::SiteGrowth;

    fn grows(stack_id: i64, slope: f64) -> SiteGrowth {
        SiteGrowth {
            stack_id,
            slope_per_hour: slope,
            slope_ci: [slope * 0.9, slope * 1.1],
            share: 0.5,
            current_bytes: 1e6,
        }
    }

    #[test]
    fn old_memory_is_the_share_past_the_horizon() {
        // 10 s, 1 min, 10 min, 1 h, ... buckets; a 20-minute window's
        // horizon is 10 minutes: the buckets from 10 minutes on are old.
        let ages = [100, 100, 100, 700, 0, 0, 0];
        assert_eq!(old_share(&ages, 600), Some(0.7));
        assert_eq!(old_share(&ages, 30), Some(0.9), "from 10 s on");
        assert_eq!(old_share(&ages, 0), Some(0.9), "never the youngest");
        assert_eq!(old_share(&[0; 7], 600), None);
    }

    #[test]
    fn old_and_accumulating_outranks_young_growth_of_the_same_rate() {
        let growth = vec![grows(1, 1000.0), grows(2, 900.0), grows(3, 500.0)];
        // Site 1's bytes are all young (a queue under load); site 2's old.
        let old = |id| match id {
            1 => Some(0.0),
            2 => Some(0.8),
            _ => None,
        };
        let ranked = rank_old_first(growth, old, 2);
        let ids: Vec<i64> = ranked.iter().map(|r| r.0.stack_id).collect();
        assert_eq!(ids, [2, 1]);
        assert_eq!(ranked[0].1, Some(0.8));
    }
}
