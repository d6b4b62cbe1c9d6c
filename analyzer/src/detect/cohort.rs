//! Cohorts: the instances the engine judges from one batch of reads.

use std::collections::HashMap;

use crate::select::Selector;
use crate::store::InstanceInfo;

/// The window an instance is judged over: a young instance's data spans
/// less than the window, so its envelope's buckets are cut to the data,
/// not to the window.
pub(super) fn window(q: &Selector, inst: &InstanceInfo) -> Selector {
    let first = inst.first_seen_ms.min(inst.start_time_ms);
    let from = q.from_ms.max(first.min(q.to_ms - 1));
    q.for_instance(&inst.service, &inst.instance).starting(from)
}

/// Instances judged together: several of one service over the whole
/// window, or one alone.
pub(super) type Cohort<'a> = Vec<&'a InstanceInfo>;

/// The most instances read at once: bounds what one read holds (a
/// day's envelopes of every resource are about 500 buckets an instance)
/// whatever a service's size.
pub(crate) const COHORT: usize = 256;

/// Groups instances into cohorts, largest first, so that the longest work
/// starts first. A service's instances are taken in the order of their
/// newest segment's id, the stores' row order: a cohort's rows then lie
/// together, where by name they were spread over the whole fleet's, and
/// each of its reads touched most of a table's granules at 10,000
/// instances (docs/benchmarks.md).
pub(super) fn cohorts<'a>(q: &Selector, instances: &'a [InstanceInfo]) -> Vec<Cohort<'a>> {
    let mut whole: HashMap<&str, Cohort<'a>> = HashMap::new();
    let mut out: Vec<Cohort<'a>> = Vec::new();
    for inst in instances {
        if window(q, inst).from_ms == q.from_ms {
            whole.entry(&inst.service).or_default().push(inst);
        } else {
            out.push(vec![inst]);
        }
    }
    for mut service in whole.into_values() {
        service.sort_by_key(|i| i.segment);
        out.extend(service.chunks(COHORT).map(<[_]>::to_vec));
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohorts_hold_every_instance_over_the_window_once() {
        let mut instances: Vec<InstanceInfo> = (0..1000)
            .map(|k| InstanceInfo {
                service: "s".into(),
                instance: format!("i-{k}"),
                host: String::new(),
                pid: 1,
                start_time_ms: 0,
                agent_version: String::new(),
                labels: Default::default(),
                first_seen_ms: 0,
                last_seen_ms: 100,
                segments: 1,
                segment: 1000 - k,
                heap_profiling: true,
                heap_profiling_reason: None,
                agent_stats: Default::default(),
            })
            .collect();
        let q = Selector::all(10, 100);
        // One young instance is judged alone, over its own data.
        instances[500].first_seen_ms = 50;
        instances[500].start_time_ms = 50;
        let c = cohorts(&q, &instances);
        assert_eq!(c.len(), 5);
        assert_eq!(
            c.iter().map(Vec::len).collect::<Vec<_>>(),
            [256, 256, 256, 231, 1]
        );
        assert_eq!(c[4][0].instance, "i-500");
        let mut seen: Vec<&str> = c.iter().flatten().map(|i| i.instance.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 1000);
        assert_eq!(c.iter().map(Vec::len).sum::<usize>(), 1000);
        // In the stores' row order: by the newest segment's id.
        assert!(c[0].windows(2).all(|w| w[0].segment < w[1].segment));
    }
}
