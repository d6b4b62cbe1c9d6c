//! Which rule conditions hold now, from what continuous evaluation kept,
//! each instance's last report and its recent pauses.

use std::collections::HashMap;

use heaptide_ui::format;

use super::rules::{name, AlertRules};
use super::state::{AlertKey, Condition};
use crate::continuous::evaluate::KeptByInstance;
use crate::continuous::{kept_by_instance, WINDOW_MS};
use crate::detect::{Finding, LeakVerdict};
use crate::error::Result;
use crate::select::{ms, Selector};
use crate::store::{InstanceInfo, Shard, Store};

/// Every condition of `shard`'s services that holds at `now_ms`. The
/// kept findings are read a service at a time, so memory follows the
/// largest service, not the fleet.
pub fn conditions(
    store: &dyn Store,
    rules: &AlertRules,
    shard: Shard,
    now_ms: i64,
) -> Result<Vec<Condition>> {
    let mut instances = store.instances(None)?;
    instances.retain(|i| shard.owns(&i.service));
    let mut out = Vec::new();
    let silent_after = ms(rules.not_reporting.after.0);
    let mut kept: Option<(&str, KeptByInstance)> = None;
    for i in &instances {
        let silent_ms = now_ms - i.last_seen_ms;
        // An instance gone for longer than the evaluation window is
        // forgotten, and its alerts resolve.
        if silent_ms > WINDOW_MS {
            continue;
        }
        if silent_ms > silent_after {
            if rules.not_reporting.enabled {
                out.push(not_reporting(i, silent_ms));
            }
            // A silent instance's leak is not judged on: its last
            // findings stand on the page, and the silence is the alert.
            continue;
        }
        if kept.as_ref().is_none_or(|(s, _)| *s != i.service) {
            kept = Some((&i.service, kept_by_instance(store, Some(&i.service))?));
        }
        let key = (i.service.clone(), i.instance.clone());
        let findings = kept.as_ref().and_then(|(_, k)| k.get(&key));
        for f in findings.map_or(&[][..], |k| &k.findings) {
            out.extend(leak_conditions(rules, f));
        }
    }
    if rules.pause.enabled {
        out.extend(pause_conditions(store, rules, &instances, now_ms)?);
    }
    Ok(out)
}

/// The `service` label of the analyzer's own alerts.
pub(crate) const ANALYZER_SERVICE: &str = "heaptide-analyzer";

/// The `instance` label of a shard's own alerts.
pub(crate) fn analyzer_instance(shard: Shard) -> String {
    format!("shard {shard}")
}

/// [`name::EVALUATION_BEHIND`]: the last full pass took longer than the
/// interval between passes.
pub fn behind(rules: &AlertRules, shard: Shard, lag: Option<super::Lag>) -> Option<Condition> {
    let lag =
        lag.filter(|l| rules.evaluation_behind.enabled && l.pass_seconds > l.every_seconds)?;
    let took = format::duration(lag.pass_seconds);
    let every = format::duration(lag.every_seconds);
    Some(Condition {
        key: key(
            name::EVALUATION_BEHIND,
            ANALYZER_SERVICE,
            &analyzer_instance(shard),
            "evaluation",
        ),
        severity: "warning",
        summary: format!("evaluation of shard {shard} is behind: a pass took {took}, every {every}"),
        description: format!(
            "The last full evaluation pass took {took}, longer than the {every} between passes, so findings and alerts lag behind the data. Shard the services over more analyzers (--shard), or evaluate less often."
        ),
        site: None,
        runway_ms: None,
    })
}

pub(super) fn key(alertname: &str, service: &str, instance: &str, resource: &str) -> AlertKey {
    AlertKey {
        alertname: alertname.to_owned(),
        service: service.to_owned(),
        instance: instance.to_owned(),
        resource: resource.to_owned(),
    }
}

fn not_reporting(i: &InstanceInfo, silent_ms: i64) -> Condition {
    let silent = format::duration(silent_ms as f64 / 1000.0);
    Condition {
        key: key(name::NOT_REPORTING, &i.service, &i.instance, "agent"),
        severity: "warning",
        summary: format!("{}/{} has not reported for {silent}", i.service, i.instance),
        description: format!(
            "No batch from {}/{} (pid {} on {}) for {silent}; its leaks are no longer judged.",
            i.service, i.instance, i.pid, i.host
        ),
        site: None,
        runway_ms: None,
    }
}

/// The leak rules that a finding meets: both, for a leak that exhausts
/// within a day, as Alertmanager's inhibition expects.
fn leak_conditions(rules: &AlertRules, f: &Finding) -> Vec<Condition> {
    if f.resource.is_gauge() {
        return super::pools::conditions(rules, f);
    }
    if f.verdict == LeakVerdict::Exhausted {
        return Vec::from_iter(rules.exhausted.enabled.then(|| exhausted_condition(f)));
    }
    let Some(tte) = f.time_to_exhaustion_seconds else {
        return Vec::new();
    };
    if f.verdict != LeakVerdict::Leak {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (rule, alertname, severity) in [
        (&rules.leak_critical, name::LEAK_CRITICAL, "critical"),
        (&rules.leak_warning, name::LEAK_WARNING, "warning"),
    ] {
        if rule.enabled && tte < rule.within.0.as_secs_f64() {
            out.push(leak_condition(f, alertname, severity, tte));
        }
    }
    out
}

pub(super) fn leak_condition(
    f: &Finding,
    alertname: &str,
    severity: &'static str,
    tte: f64,
) -> Condition {
    let resource = f.label();
    let resource = resource.as_str();
    let site = f.sites.first();
    let limit = f.limit.map_or("its limit".into(), |l| {
        let source = f.limit_source.as_deref().unwrap_or("limit");
        format!("{} ({source})", format::amount(f.unit, l))
    });
    let mut description = format!(
        "{resource} grows {} and is at {} of {limit}; it runs out in {}.",
        format::rate_per_hour(f.unit, f.slope_per_hour.unwrap_or(0.0)),
        format::amount(f.unit, f.current.unwrap_or(0.0)),
        format::duration(tte),
    );
    if let Some(s) = site {
        description.push_str(&format!(
            " Top allocation site: {}{} ({:.0}% of the growth).",
            s.name(),
            s.app_location
                .as_deref()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default(),
            s.share * 100.0
        ));
    }
    Condition {
        key: key(alertname, &f.service, &f.instance, resource),
        severity,
        summary: format!(
            "{}/{}: {resource} runs out in {}",
            f.service,
            f.instance,
            format::duration(tte)
        ),
        description,
        site: site.map(|s| s.name().to_owned()),
        runway_ms: Some((tte * 1000.0) as i64),
    }
}

/// `HeaptideExhausted`: a resource at its limit, critical, at once.
pub(super) fn exhausted_condition(f: &Finding) -> Condition {
    let resource = f.label();
    let resource = resource.as_str();
    let at = |v: Option<f64>| v.map_or("?".into(), |v| format::amount(f.unit, v));
    let source = f.limit_source.as_deref().unwrap_or("limit");
    let detail = crate::read::report::detail(f);
    Condition {
        key: key(name::EXHAUSTED, &f.service, &f.instance, resource),
        severity: "critical",
        summary: format!("{}/{}: {resource} exhausted", f.service, f.instance),
        description: format!(
            "{resource} is at {} of {} ({source}){detail}: new {resource} fail now.",
            at(f.current),
            at(f.limit)
        ),
        site: None,
        runway_ms: Some(0),
    }
}

/// Instances whose pauses of the last window have a p99 over the rule's.
fn pause_conditions(
    store: &dyn Store,
    rules: &AlertRules,
    instances: &[InstanceInfo],
    now_ms: i64,
) -> Result<Vec<Condition>> {
    let over_ms = rules.pause.p99_over.0.as_secs_f64() * 1000.0;
    let window = Selector::all(now_ms - ms(rules.pause.window.0), now_ms);
    let mut services: Vec<&str> = instances.iter().map(|i| i.service.as_str()).collect();
    services.dedup();
    let mut out = Vec::new();
    for service in services {
        let sel = Selector {
            service: Some(service.to_owned()),
            ..window.clone()
        };
        let mut by_instance: HashMap<String, Vec<f64>> = HashMap::new();
        for p in store.pauses(&sel)? {
            by_instance
                .entry(p.instance)
                .or_default()
                .push(p.duration_ms);
        }
        for (instance, mut d) in by_instance {
            let p99 = p99(&mut d);
            if p99 > over_ms {
                let window = format::duration(rules.pause.window.0.as_secs_f64());
                out.push(Condition {
                    key: key(name::PAUSE_P99, service, &instance, "pauses"),
                    severity: "warning",
                    summary: format!("{service}/{instance}: pause p99 {p99:.0} ms"),
                    description: format!(
                        "The p99 of the {} pauses of the last {window} is {p99:.1} ms, over {over_ms:.0} ms.",
                        d.len()
                    ),
                    site: None,
                    runway_ms: None,
                });
            }
        }
    }
    Ok(out)
}

/// The nearest-rank 99th percentile: exact over the few hundred pauses a
/// window holds, where a histogram crate's buckets would only round it.
fn p99(d: &mut [f64]) -> f64 {
    d.sort_by(f64::total_cmp);
    let rank = ((d.len() as f64) * 0.99).ceil() as usize;
    d.get(rank.saturating_sub(1)).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn p99_is_the_nearest_rank() {
        let mut d: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(super::p99(&mut d), 198.0);
        assert_eq!(super::p99(&mut [5.0]), 5.0);
        assert_eq!(super::p99(&mut []), 0.0);
    }

    #[test]
    fn a_pass_is_behind_only_when_longer_than_its_interval_and_the_rule_is_on() {
        use super::super::{AlertRules, Lag};
        use crate::store::Shard;
        let mut rules = AlertRules::default();
        let lag = |pass_seconds| {
            Some(Lag {
                pass_seconds,
                every_seconds: 60.0,
            })
        };
        let shard = Shard { index: 1, count: 2 };
        let c = super::behind(&rules, shard, lag(61.0)).unwrap();
        assert_eq!(c.key.instance, "shard 1/2");
        assert!(super::behind(&rules, shard, lag(59.0)).is_none());
        assert!(super::behind(&rules, shard, None).is_none());
        rules.evaluation_behind.enabled = false;
        assert!(super::behind(&rules, shard, lag(61.0)).is_none());
    }
}
