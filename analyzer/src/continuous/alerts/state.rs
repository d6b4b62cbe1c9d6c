//! The life of an alert, as Prometheus's rules live it: a condition that
//! holds makes it pending; held for the rule's `for`, it fires; gone for
//! `resolve_after`, it resolves.

use serde::{Deserialize, Serialize};

use super::rules::{AlertRules, Timing};

/// Labels that identify an alert: Alertmanager's, and the store's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlertKey {
    pub alertname: String,
    pub service: String,
    pub instance: String,
    pub resource: String,
}

/// A rule's condition holding for one key in this evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub key: AlertKey,
    pub severity: &'static str,
    pub summary: String,
    pub description: String,
    /// The function named by the top allocation site, for leaks of heap.
    pub site: Option<String>,
    /// How long until the resource runs out, for leaks: a short runway
    /// shortens the rule's `for` ([`AlertRules::timing_for_runway`]).
    pub runway_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

/// One alert, as kept between evaluations and sent to webhooks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    #[serde(flatten)]
    pub key: AlertKey,
    pub severity: String,
    pub state: State,
    /// Since when the condition has held.
    pub active_since_ms: i64,
    /// When it fired.
    pub starts_at_ms: Option<i64>,
    /// When it resolved.
    pub ends_at_ms: Option<i64>,
    /// Since when the condition of a firing alert has been gone.
    pub clear_since_ms: Option<i64>,
    pub summary: String,
    pub description: String,
    pub site: Option<String>,
    /// When a webhook was last given it.
    pub notified_ms: Option<i64>,
    /// Another alert of a higher severity fires for the same service,
    /// instance and resource: webhooks that cannot inhibit (Slack) are
    /// not sent this one. Worked out for each notification, never kept.
    #[serde(skip)]
    pub outranked: bool,
}

impl Alert {
    fn new(c: &Condition, now_ms: i64) -> Alert {
        Alert {
            key: c.key.clone(),
            severity: c.severity.to_owned(),
            state: State::Pending,
            active_since_ms: now_ms,
            starts_at_ms: None,
            ends_at_ms: None,
            clear_since_ms: None,
            summary: c.summary.clone(),
            description: c.description.clone(),
            site: c.site.clone(),
            notified_ms: None,
            outranked: false,
        }
    }
}

/// One alert's next state, given whether its condition holds now.
/// Returns `None` for an alert that no longer exists (a pending one whose
/// condition went away before it fired).
pub fn step(
    prev: Option<Alert>,
    cond: Option<&Condition>,
    t: Timing,
    now_ms: i64,
) -> Option<Alert> {
    match (prev, cond) {
        (None, None) => None,
        (Some(a), None) => match a.state {
            State::Pending | State::Resolved => None,
            State::Firing => {
                let since = a.clear_since_ms.unwrap_or(now_ms);
                if now_ms - since >= t.resolve_after_ms {
                    Some(Alert {
                        state: State::Resolved,
                        ends_at_ms: Some(now_ms),
                        ..a
                    })
                } else {
                    Some(Alert {
                        clear_since_ms: Some(since),
                        ..a
                    })
                }
            }
        },
        (prev, Some(c)) => {
            let mut a = match prev {
                Some(a) if a.state != State::Resolved => a,
                _ => Alert::new(c, now_ms),
            };
            // The annotations follow the latest evaluation.
            a.summary.clone_from(&c.summary);
            a.description.clone_from(&c.description);
            a.site.clone_from(&c.site);
            a.clear_since_ms = None;
            if a.state == State::Pending && now_ms - a.active_since_ms >= t.for_ms {
                a.state = State::Firing;
                a.starts_at_ms = Some(now_ms);
            }
            Some(a)
        }
    }
}

/// The outcome of one evaluation of every alert.
#[derive(Debug, Default)]
pub struct Advance {
    /// Pending and firing alerts, to keep.
    pub active: Vec<Alert>,
    /// Alerts that fired or resolved in this evaluation, or that are due
    /// to be sent again: what webhooks are given.
    pub notify: Vec<Alert>,
    /// Alerts whose state changed, for the history.
    pub changed: Vec<Alert>,
}

/// Steps every kept alert and every holding condition at `now_ms`.
pub fn advance(
    rules: &AlertRules,
    kept: Vec<Alert>,
    conditions: &[Condition],
    now_ms: i64,
) -> Advance {
    use std::collections::BTreeMap;
    let mut prev: BTreeMap<AlertKey, Alert> =
        kept.into_iter().map(|a| (a.key.clone(), a)).collect();
    let mut out = Advance::default();
    let repeat_ms = crate::select::ms(rules.repeat_every.0);
    let mut visit = |prev: Option<Alert>, cond: Option<&Condition>, alertname: &str| {
        let before = prev.as_ref().map(|a| a.state);
        let timing = rules.timing_for_runway(alertname, cond.and_then(|c| c.runway_ms));
        let Some(mut a) = step(prev, cond, timing, now_ms) else {
            return;
        };
        let changed = before != Some(a.state);
        let due =
            a.state == State::Firing && a.notified_ms.is_some_and(|at| now_ms - at >= repeat_ms);
        if changed && a.state != State::Pending {
            out.changed.push(a.clone());
        }
        if (changed && a.state != State::Pending) || due {
            a.notified_ms = Some(now_ms);
            out.notify.push(a.clone());
        }
        if a.state != State::Resolved {
            out.active.push(a);
        }
    };
    for c in conditions {
        visit(prev.remove(&c.key), Some(c), &c.key.alertname);
    }
    for (key, a) in prev {
        visit(Some(a), None, &key.alertname);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond() -> Condition {
        Condition {
            key: AlertKey {
                alertname: super::super::rules::name::LEAK_CRITICAL.into(),
                service: "s".into(),
                instance: "i".into(),
                resource: "heap".into(),
            },
            severity: "critical",
            summary: "s".into(),
            description: "d".into(),
            site: None,
            runway_ms: None,
        }
    }

    /// Runs `advance` over a sequence of evaluations a minute apart,
    /// returning the states notified at each.
    fn run(holds: &[bool]) -> Vec<Vec<State>> {
        let rules = AlertRules::default();
        let mut kept = Vec::new();
        let mut sent = Vec::new();
        for (i, h) in holds.iter().enumerate() {
            let conds = if *h { vec![cond()] } else { vec![] };
            let a = advance(&rules, kept, &conds, i as i64 * 60_000);
            sent.push(a.notify.iter().map(|a| a.state).collect());
            kept = a.active;
        }
        sent
    }

    #[test]
    fn one_noisy_evaluation_neither_fires_nor_resolves() {
        use State::*;
        // `for` is 1m: a blip is pending and then forgotten.
        assert!(run(&[true, false, false]).iter().all(Vec::is_empty));
        // Held for a minute: fires on the second evaluation.
        let s = run(&[
            true, true, true, false, true, false, false, false, false, false, false,
        ]);
        assert_eq!(s[1], vec![Firing]);
        // `resolve_after` is 5m: the gap at 3 does not resolve it, and it
        // resolves five minutes after the condition last went away.
        assert!(s[2..10].iter().all(Vec::is_empty), "{s:?}");
        assert_eq!(s[10], vec![Resolved]);
    }

    #[test]
    fn a_firing_alert_is_sent_again_after_repeat_every() {
        let rules = AlertRules {
            repeat_every: crate::select::Span(std::time::Duration::from_secs(120)),
            ..Default::default()
        };
        let mut kept = Vec::new();
        let mut notified = 0;
        for i in 0..6 {
            let a = advance(&rules, kept, &[cond()], i * 60_000);
            notified += a.notify.len();
            assert!(a.active[0].starts_at_ms == Some(60_000) || i == 0);
            kept = a.active;
        }
        // Fired at 1 m, sent again at 3 m and 5 m.
        assert_eq!(notified, 3);
    }
}
