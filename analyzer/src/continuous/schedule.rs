//! The schedule `serve` runs beside its requests: a pass judges every
//! instance, then the alert rules, then hands what fired or resolved to
//! the notifier, which never waits; then it sleeps one interval.
//!
//! A batch whose agent says a resource is about to run out
//! ([`heaptide_wire::metric::AGENT_URGENT`]) flags its service as
//! [`Urgent`]: an early pass judges just the flagged services, and the
//! alert rules, without waiting for the interval. Early passes are at
//! least [`EARLY_GAP`] apart, so an agent sampling fast cannot make the
//! analyzer judge on every batch.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{Gauge, Histogram, IntCounter, IntGauge};
use tokio::sync::Notify;

use super::alerts::notify::Notifier;
use super::alerts::AlertRules;
use crate::store::{Shard, Store};

/// The shortest time between two passes that an urgent batch starts.
pub const EARLY_GAP: Duration = Duration::from_secs(5);

/// What the schedule runs, and how often.
pub(crate) struct Plan {
    pub rules: AlertRules,
    pub notifier: Notifier,
    pub every: Duration,
    /// The services this analyzer evaluates and alerts on.
    pub shard: Shard,
}

/// How long each pass took, what it judged, and how many failed:
/// `/metrics` shows them.
pub(crate) struct Meters {
    pub seconds: Histogram,
    pub failures: IntCounter,
    /// The last full pass's duration.
    pub last_seconds: Gauge,
    /// Instances each pass judged.
    pub judged: Histogram,
    /// 1 while the last full pass took longer than the interval.
    pub behind: IntGauge,
}

/// Services flagged by urgent batches since the last early pass. Bounded
/// by the store's own bound on services.
#[derive(Default)]
pub struct Urgent {
    services: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Urgent {
    /// Flags `service` to be judged at once.
    pub fn flag(&self, service: &str) {
        if let Ok(mut s) = self.services.lock() {
            if !s.contains(service) {
                s.insert(service.to_owned());
            }
        }
        self.wake.notify_one();
    }

    fn take(&self, shard: Shard) -> Vec<String> {
        let taken = self
            .services
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        taken.into_iter().filter(|s| shard.owns(s)).collect()
    }
}

/// Runs passes until the task is aborted: a full one every interval, and
/// an early one for urgent services in between.
pub(crate) async fn run(store: Arc<dyn Store>, meters: Meters, plan: Plan, urgent: Arc<Urgent>) {
    let plan = Arc::new(plan);
    let meters = Arc::new(meters);
    let mut next_full = Instant::now();
    let mut last_pass: Option<Instant> = None;
    loop {
        if Instant::now() >= next_full {
            pass(&store, &meters, &plan, None).await;
            last_pass = Some(Instant::now());
            next_full = Instant::now() + plan.every;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep_until(next_full.into()) => continue,
            () = urgent.wake.notified() => {}
        }
        if let Some(at) = last_pass {
            tokio::time::sleep_until((at + EARLY_GAP).into()).await;
        }
        let services = urgent.take(plan.shard);
        if !services.is_empty() {
            pass(&store, &meters, &plan, Some(services)).await;
            last_pass = Some(Instant::now());
        }
    }
}

/// One pass: every stale instance of the shard, or only `services`; then
/// the alert rules and their notifications. A full pass that took longer
/// than the interval is [`super::alerts::rules::name::EVALUATION_BEHIND`];
/// an early pass keeps the last full pass's verdict on that.
async fn pass(
    store: &Arc<dyn Store>,
    meters: &Arc<Meters>,
    plan: &Arc<Plan>,
    services: Option<Vec<String>>,
) {
    let (st, p, m) = (store.clone(), plan.clone(), meters.clone());
    let started = Instant::now();
    let pass = tokio::task::spawn_blocking(move || {
        let now = crate::select::now_ms();
        let pass = match &services {
            None => super::evaluate_shard(&*st, p.shard, now)?,
            Some(s) => super::evaluate::evaluate_services(&*st, s, now)?,
        };
        m.judged.observe(pass.judged as f64);
        if services.is_none() {
            m.last_seconds.set(started.elapsed().as_secs_f64());
        }
        let lag = super::alerts::Lag {
            pass_seconds: m.last_seconds.get(),
            every_seconds: p.every.as_secs_f64(),
        };
        m.behind
            .set(i64::from(lag.pass_seconds > lag.every_seconds));
        p.notifier.notify(&super::alerts::advance_shard(
            &*st,
            &p.rules,
            p.shard,
            Some(lag),
            now,
        )?);
        Ok::<_, crate::Error>((pass, services.is_some()))
    })
    .await;
    meters.seconds.observe(started.elapsed().as_secs_f64());
    match pass {
        Ok(Ok((p, early))) => tracing::debug!(?p, early, "evaluation pass"),
        Ok(Err(e)) => {
            meters.failures.inc();
            tracing::warn!("evaluation pass failed: {e}");
        }
        Err(_) => {
            meters.failures.inc();
            tracing::warn!("evaluation pass panicked");
        }
    }
}
