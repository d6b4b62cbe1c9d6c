//! What part of a leaking resource grows, in words: fds of kind `file`,
//! sockets in `close_wait`, which pool, or which part of RSS (the heap,
//! the allocator's overhead, thread stacks, memory outside the allocator).

use std::collections::HashMap;

use super::analyze::segmented;
use super::{assess_lifetimes, Finding, LeakVerdict, Options, Resource, Subject};
use crate::error::Result;
use crate::select::Selector;
use crate::store::Store;
use heaptide_ui::format;
use heaptide_wire::{metric, Unit};

/// Sets `f.detail` to what grows, and for RSS, says what that part is in
/// `f.reason`.
/// `names` are the instance's metric names, when they were read with
/// the rest of its reads.
pub(super) fn explain(
    store: &dyn Store,
    sel: &Selector,
    subject: &Subject,
    f: &mut Finding,
    names: Option<&[String]>,
    opts: &Options,
) -> Result<()> {
    let r = subject.resource;
    if let Some(name) = &subject.name {
        f.detail = Some(HashMap::from([(r.name().to_owned(), name.clone())]));
        return Ok(());
    }
    let mut detail = HashMap::new();
    // The names are read only for a leak: what part of it grows.
    let read;
    let names = match names {
        Some(n) => n,
        None => {
            read = store.metric_names(&f.service, Some(&f.instance))?;
            &read
        }
    };
    for (prefix, key) in [r.detail_prefix(), r.target_prefix()].into_iter().flatten() {
        // RSS's parts add up to it, and RSS is judged to leak: the part
        // that grows most explains it, whatever each part's own verdict
        // on its noisier series. A kind or target must leak itself.
        let parts = r == Resource::Rss;
        let Some((slope, what)) = steepest(store, sel, names, prefix, r.metric(), parts, opts)?
        else {
            continue;
        };
        if r == Resource::Rss {
            f.reason = format!("{}; {}", f.reason, rss_part_words(&what, slope));
        }
        detail.insert(key.to_owned(), what);
    }
    f.detail = (!detail.is_empty()).then_some(detail);
    Ok(())
}

/// One cause, one finding: when an instance's fds leak as sockets and its
/// sockets leak too, the sockets finding is merged into the fds one, which
/// keeps the runway (the fd limit is what runs out, and fds count more
/// than sockets) and takes the sockets' peer and state, shown as "also
/// seen as".
pub(super) fn merge_socket_fds(findings: &mut Vec<Finding>) {
    let leaking = |f: &Finding, r| f.resource == r && f.verdict.alarms();
    let Some(s) = findings.iter().position(|f| leaking(f, Resource::Sockets)) else {
        return;
    };
    let Some(fds) = findings.iter().position(|f| {
        leaking(f, Resource::Fds)
            && f.detail
                .as_ref()
                .and_then(|d| d.get("fd_kind"))
                .map(String::as_str)
                == Some("socket")
    }) else {
        return;
    };
    let sockets = findings.remove(s);
    let fds = &mut findings[if fds > s { fds - 1 } else { fds }];
    let detail = sockets.detail.unwrap_or_default();
    fds.also_seen_as = Some(match detail.get("tcp_state") {
        Some(state) => format!("sockets (tcp state {state})"),
        None => "sockets".to_owned(),
    });
    if let Some(peer) = detail.get("peer") {
        fds.detail
            .get_or_insert_with(HashMap::new)
            .insert("peer".into(), peer.clone());
    }
}

/// The breakdown metric under `prefix` with the steepest leak, by its
/// name after the prefix, and its slope per hour. Kinds and states are
/// not taken from the targets counted under the same root (`fds.` holds
/// `fds.to.` too).
fn steepest(
    store: &dyn Store,
    sel: &Selector,
    names: &[String],
    prefix: &str,
    total: &str,
    parts: bool,
    opts: &Options,
) -> Result<Option<(f64, String)>> {
    let mut best: Option<(f64, String)> = None;
    for name in names.iter().filter(|n| {
        n.starts_with(prefix)
            && n.as_str() != total
            && (metric::is_target(prefix) || !metric::is_target(n))
    }) {
        let segs = segmented(store, sel, name)?;
        let sub = assess_lifetimes(&segs, opts);
        let counts = parts || sub.verdict == LeakVerdict::Leak;
        if let (true, Some(g)) = (counts, sub.fit) {
            if g.trend.slope > 0.0 && best.as_ref().is_none_or(|(s, _)| g.trend.slope > *s) {
                best = Some((g.trend.slope, name[prefix.len()..].to_owned()));
            }
        }
    }
    Ok(best)
}

/// What a growing part of RSS is, as the finding says it.
fn rss_part_words(part: &str, slope: f64) -> String {
    let rate = format::rate_per_hour(Unit::Bytes, slope);
    let full = format!("{}{part}", metric::RSS_PART_PREFIX);
    match full.as_str() {
        metric::RSS_PART_HEAP => format!("the heap grows {rate}: see the sites"),
        metric::RSS_PART_FRAGMENTATION => {
            format!("allocator overhead: fragmentation, active minus allocated, grows {rate}")
        }
        metric::RSS_PART_ALLOCATOR_FREE => {
            format!("allocator overhead: freed pages it keeps grow {rate}")
        }
        metric::RSS_PART_ALLOCATOR_METADATA => {
            format!("allocator overhead: its metadata grows {rate}")
        }
        metric::RSS_PART_STACKS => format!("thread stacks grow {rate}"),
        metric::RSS_PART_OUTSIDE => {
            format!("outside the allocator: anonymous mappings, {rate}")
        }
        metric::RSS_PART_FILE => format!("file-backed pages grow {rate}"),
        _ => format!("{part} grows {rate}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leak(r: Resource, detail: &[(&str, &str)]) -> Finding {
        let mut f: Finding = serde_json::from_value(serde_json::json!({
            "service": "s", "instance": "i", "resource": r.name(), "metric": r.metric(),
            "unit": "fds", "verdict": "leak", "severity": "warning", "reason": "grows",
            "slope_per_hour": 10.0, "slope_ci": null, "confidence": null, "started_ms": null,
            "current": 100.0, "limit": 1024.0, "limit_source": "RLIMIT_NOFILE",
            "time_to_exhaustion_seconds": 3600.0, "time_to_exhaustion_bounds_seconds": null,
            "instances_growing": 1, "instances": 1, "sites": []
        }))
        .unwrap();
        f.detail = Some(
            detail
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        f
    }

    #[test]
    fn sockets_leaking_as_fds_are_one_finding_that_names_the_peer() {
        let mut all = vec![
            leak(
                Resource::Fds,
                &[("fd_kind", "socket"), ("fd_target", "tcp:10.0.0.5:5432")],
            ),
            leak(
                Resource::Sockets,
                &[("tcp_state", "established"), ("peer", "10.0.0.5:5432")],
            ),
        ];
        merge_socket_fds(&mut all);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].resource, Resource::Fds);
        assert_eq!(
            all[0].also_seen_as.as_deref(),
            Some("sockets (tcp state established)")
        );
        assert_eq!(all[0].detail.as_ref().unwrap()["peer"], "10.0.0.5:5432");
        // fds of files leaking beside sockets are two causes.
        let mut two = vec![
            leak(Resource::Fds, &[("fd_kind", "file")]),
            leak(Resource::Sockets, &[("tcp_state", "close_wait")]),
        ];
        merge_socket_fds(&mut two);
        assert_eq!(two.len(), 2);
    }

    #[test]
    fn each_part_of_rss_is_said_in_words() {
        assert_eq!(
            rss_part_words("outside_allocator", 3.5 * 1024.0 * 1024.0 * 1024.0),
            "outside the allocator: anonymous mappings, +3.5 GiB/h"
        );
        assert!(rss_part_words("heap", 1.0).ends_with("see the sites"));
        assert!(rss_part_words("fragmentation", 1.0).contains("active minus allocated"));
        assert!(rss_part_words("stacks", 1.0).starts_with("thread stacks"));
    }
}
