//! The schedule `serve` runs beside its requests: a pass judges every
//! instance, then the alert rules, then hands what fired or resolved to
//! the notifier, which never waits; then it sleeps one interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Histogram, IntCounter};

use super::alerts::notify::Notifier;
use super::alerts::AlertRules;
use crate::store::{Shard, Store};

/// What the schedule runs, and how often.
pub(crate) struct Plan {
    pub rules: AlertRules,
    pub notifier: Notifier,
    pub every: Duration,
    /// The services this analyzer evaluates and alerts on.
    pub shard: Shard,
}

/// How long each pass took, and how many failed: `/metrics` shows both.
pub(crate) struct Meters {
    pub seconds: Histogram,
    pub failures: IntCounter,
}

/// Runs passes until the task is aborted.
pub(crate) async fn run(store: Arc<dyn Store>, meters: Meters, plan: Plan) {
    let plan = Arc::new(plan);
    loop {
        let (st, p) = (store.clone(), plan.clone());
        let started = Instant::now();
        let pass = tokio::task::spawn_blocking(move || {
            let now = crate::select::now_ms();
            let pass = super::evaluate_shard(&*st, p.shard, now)?;
            p.notifier
                .notify(&super::alerts::advance_shard(&*st, &p.rules, p.shard, now)?);
            Ok::<_, crate::Error>(pass)
        })
        .await;
        meters.seconds.observe(started.elapsed().as_secs_f64());
        match pass {
            Ok(Ok(p)) => tracing::debug!(?p, "evaluation pass"),
            Ok(Err(e)) => {
                meters.failures.inc();
                tracing::warn!("evaluation pass failed: {e}");
            }
            Err(_) => {
                meters.failures.inc();
                tracing::warn!("evaluation pass panicked");
            }
        }
        tokio::time::sleep(plan.every).await;
    }
}
