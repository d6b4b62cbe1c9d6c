//! The alerts of pools, queues and a runtime's tasks:
//! [`name::POOL_EXHAUSTION`] when one is saturated now or runs out within
//! the rule's `within`, and [`name::POOL_LEAK`] when its use climbs and is
//! not given back, whatever its runway.

use heaptide_ui::format;

use super::conditions::{exhausted_condition, key, leak_condition};
use super::rules::{name, AlertRules};
use super::state::Condition;
use crate::detect::{Finding, LeakVerdict, Severity};

/// The pool rules a finding of a pool, queue or runtime meets.
pub(super) fn conditions(rules: &AlertRules, f: &Finding) -> Vec<Condition> {
    let mut out = Vec::new();
    let exhaustion = &rules.pool_exhaustion;
    match (f.verdict, f.time_to_exhaustion_seconds) {
        (LeakVerdict::Exhausted, _) if exhaustion.enabled => {
            let mut c = exhausted_condition(f);
            c.key.alertname = name::POOL_EXHAUSTION.into();
            c.description = format!("{} {}", f.reason, saturated_advice(f));
            out.push(c);
        }
        (LeakVerdict::Leak, Some(tte))
            if exhaustion.enabled && tte < exhaustion.within.0.as_secs_f64() =>
        {
            let severity = Severity::of(Some(tte)).name();
            out.push(leak_condition(f, name::POOL_EXHAUSTION, severity, tte));
        }
        _ => {}
    }
    if f.verdict == LeakVerdict::Leak && rules.pool_leak.enabled {
        out.push(leak(f));
    }
    out
}

fn saturated_advice(f: &Finding) -> &'static str {
    match f.resource {
        crate::detect::Resource::Queue => {
            "Producers wait on a full queue: its consumer is too slow or stuck."
        }
        _ => "Callers wait for a slot: look for slots held across slow calls, or never given back.",
    }
}

/// `HeaptidePoolLeak`: use that climbs, with how fast and how far.
fn leak(f: &Finding) -> Condition {
    let what = f.label();
    let rate = format::rate_per_hour(f.unit, f.slope_per_hour.unwrap_or(0.0));
    let now = format::amount(f.unit, f.current.unwrap_or(0.0));
    let of = f
        .limit
        .map(|l| format!(" of {}", format::amount(f.unit, l)))
        .unwrap_or_default();
    let held = match f.resource {
        crate::detect::Resource::Queue => "items are queued faster than they are taken",
        crate::detect::Resource::Tasks => "tasks are spawned and never finish",
        _ => "slots are checked out and not given back",
    };
    Condition {
        key: key(name::POOL_LEAK, &f.service, &f.instance, &what),
        severity: "warning",
        summary: format!("{}/{}: {what} climbs {rate}", f.service, f.instance),
        description: format!("{what} climbs {rate}, now {now}{of}: {held}. {}", f.reason),
        site: None,
        runway_ms: f.time_to_exhaustion_seconds.map(|t| (t * 1000.0) as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Resource;
    use heaptide_wire::Unit;

    fn pool(verdict: LeakVerdict, tte: Option<f64>) -> Finding {
        Finding {
            service: "api".into(),
            instance: "a-1".into(),
            resource: Resource::Pool,
            metric: "pool.db.in_use".into(),
            unit: Unit::Slots,
            verdict,
            severity: None,
            reason: "at its limit: 16 of 16 (pool capacity), 9 waiting".into(),
            slope_per_hour: Some(12.0),
            slope_ci: None,
            confidence: None,
            started_ms: None,
            current: Some(16.0),
            limit: Some(16.0),
            limit_source: Some("pool capacity".into()),
            time_to_exhaustion_seconds: tte,
            time_to_exhaustion_bounds_seconds: None,
            detail: Some([("pool".to_owned(), "db".to_owned())].into()),
            instances_growing: 1,
            instances: 1,
            sites: vec![],
            also_seen_as: None,
        }
    }

    #[test]
    fn a_saturated_pool_pages_exhaustion_and_a_climbing_one_both_rules() {
        let rules = AlertRules::default();
        let c = conditions(&rules, &pool(LeakVerdict::Exhausted, Some(0.0)));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].key.alertname, name::POOL_EXHAUSTION);
        assert_eq!(c[0].key.resource, "pool db");
        assert_eq!(c[0].severity, "critical");
        assert!(
            c[0].description.contains("9 waiting"),
            "{}",
            c[0].description
        );

        let c = conditions(&rules, &pool(LeakVerdict::Leak, Some(3_600.0)));
        let names: Vec<&str> = c.iter().map(|c| c.key.alertname.as_str()).collect();
        assert_eq!(names, [name::POOL_EXHAUSTION, name::POOL_LEAK]);
        assert!(
            c[1].summary.contains("pool db climbs +12 slots/h"),
            "{}",
            c[1].summary
        );

        // Beyond the exhaustion rule's day, only the leak rule holds.
        let c = conditions(&rules, &pool(LeakVerdict::Leak, Some(9.0 * 86_400.0)));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].key.alertname, name::POOL_LEAK);
        assert!(conditions(&rules, &pool(LeakVerdict::Flat, None)).is_empty());
    }
}
