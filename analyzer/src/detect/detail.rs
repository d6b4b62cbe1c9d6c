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
pub(super) fn explain(
    store: &dyn Store,
    sel: &Selector,
    subject: &Subject,
    f: &mut Finding,
    opts: &Options,
) -> Result<()> {
    let r = subject.resource;
    if let Some(name) = &subject.name {
        f.detail = Some(HashMap::from([(r.name().to_owned(), name.clone())]));
        return Ok(());
    }
    let Some((prefix, key)) = r.detail_prefix() else {
        return Ok(());
    };
    let Some((slope, what)) = steepest(store, sel, prefix, r.metric(), f, opts)? else {
        return Ok(());
    };
    if r == Resource::Rss {
        f.reason = format!("{}; {}", f.reason, rss_part_words(&what, slope));
    }
    f.detail = Some(HashMap::from([(key.to_owned(), what)]));
    Ok(())
}

/// The breakdown metric under `prefix` with the steepest leak, by its
/// name after the prefix, and its slope per hour.
fn steepest(
    store: &dyn Store,
    sel: &Selector,
    prefix: &str,
    total: &str,
    f: &Finding,
    opts: &Options,
) -> Result<Option<(f64, String)>> {
    let mut best: Option<(f64, String)> = None;
    // The names are read only for a leak: what part of it grows.
    let names = store.metric_names(&f.service, Some(&f.instance))?;
    for name in names
        .iter()
        .filter(|n| n.starts_with(prefix) && n.as_str() != total)
    {
        let segs = segmented(store, sel, name)?;
        let sub = assess_lifetimes(&segs, opts);
        if let (LeakVerdict::Leak, Some(g)) = (sub.verdict, sub.fit) {
            if best.as_ref().is_none_or(|(s, _)| g.trend.slope > *s) {
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
