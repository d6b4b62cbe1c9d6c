//! Alerts: after every evaluation pass, the rules of [`rules::AlertRules`]
//! are checked against what the pass kept; [`state`] moves each alert
//! through pending, firing and resolved; the store keeps the active ones
//! and the history; [`notify`] tells the webhooks.

pub(crate) mod conditions;
pub(crate) mod notify;
pub(crate) mod payload;
mod pools;
pub mod rules;
pub(crate) mod state;

pub use rules::{AlertRules, WebhookConfig, WebhookKind};
pub use state::{Alert, AlertKey, State};

use crate::error::{Error, Result};
use crate::store::{parse_severity, KeptAlert, Shard, Store, Transition, TransitionState, Watched};

/// The active (pending and firing) alerts the store keeps.
pub fn active(store: &dyn Store) -> Result<Vec<Alert>> {
    store
        .kept_alerts()?
        .iter()
        .map(|a| {
            serde_json::from_str(&a.alert)
                .map_err(|e| Error::invalid("alerts", format!("kept alert unreadable: {e}")))
        })
        .collect()
}

/// Advances every alert at `now_ms`: checks the rules against the kept
/// findings, keeps the active alerts and records what fired or resolved.
/// Returns the alerts to send.
pub fn advance(store: &dyn Store, rules: &AlertRules, now_ms: i64) -> Result<Vec<Alert>> {
    advance_shard(store, rules, Shard::default(), None, now_ms)
}

/// How long the last full evaluation pass took, against the interval
/// between passes: [`rules::name::EVALUATION_BEHIND`] holds when it is
/// longer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    pub pass_seconds: f64,
    pub every_seconds: f64,
}

/// Whether `key` is one of `shard`'s alerts: those of its services, and
/// its own evaluation's.
fn owns(shard: Shard, key: &AlertKey) -> bool {
    if key.alertname == rules::name::EVALUATION_BEHIND {
        key.instance == conditions::analyzer_instance(shard)
    } else {
        shard.owns(&key.service)
    }
}

/// [`advance`] for the services of one shard: each analyzer that shares
/// a store checks, keeps and notifies only its own, so no alert is sent
/// twice.
pub(crate) fn advance_shard(
    store: &dyn Store,
    rules: &AlertRules,
    shard: Shard,
    lag: Option<Lag>,
    now_ms: i64,
) -> Result<Vec<Alert>> {
    let mut holding = conditions::conditions(store, rules, shard, now_ms)?;
    holding.extend(conditions::behind(rules, shard, lag));
    let mut mine = active(store)?;
    mine.retain(|a| owns(shard, &a.key));
    let adv = state::advance(rules, mine, &holding, now_ms);
    let rows = adv
        .active
        .iter()
        .map(|a| {
            let key = payload::fingerprint(a);
            serde_json::to_string(a)
                .map(|alert| KeptAlert { key, alert })
                .map_err(|e| Error::invalid("alerts", e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    store.keep_alerts(shard, &rows)?;
    let history = adv
        .changed
        .iter()
        .map(|a| {
            Ok(Transition {
                at_ms: now_ms,
                service: a.key.service.clone(),
                instance: a.key.instance.clone(),
                subject: a.key.alertname.clone(),
                resource: Watched::parse(&a.key.resource)?,
                state: match a.state {
                    State::Pending => TransitionState::Pending,
                    State::Firing => TransitionState::Firing,
                    State::Resolved => TransitionState::Resolved,
                },
                severity: Some(parse_severity(&a.severity)?),
                summary: a.summary.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    store.record_transitions(&history)?;
    Ok(outrank(adv.notify, &adv.active))
}

/// Marks each alert to notify that another firing alert of the same
/// subject (service, instance, resource) outranks by severity: a leak
/// that runs out within a day meets both leak rules, and a webhook that
/// cannot inhibit should page once, with the critical.
fn outrank(mut notify: Vec<Alert>, active: &[Alert]) -> Vec<Alert> {
    // `Severity` is declared most severe first: a lower rank outranks.
    let rank = |s: &str| parse_severity(s).map_or(u8::MAX, |v| v as u8);
    let subject = |a: &Alert| {
        (
            a.key.service.clone(),
            a.key.instance.clone(),
            a.key.resource.clone(),
        )
    };
    for a in &mut notify {
        a.outranked = active.iter().any(|b| {
            b.state == State::Firing
                && subject(b) == subject(a)
                && rank(&b.severity) < rank(&a.severity)
        });
    }
    notify
}
