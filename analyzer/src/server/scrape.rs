//! `analyzer serve --scrape NAME=URL`: heap profiles pulled from pprof
//! endpoints (Go's `/debug/pprof/heap`, `jemalloc_pprof`) on a fixed
//! schedule, each stored as a push to `/v1/ingest/pprof` would be.
//!
//! A scrape holds one of ingest's decode slots while it decodes and
//! stores, so pulls and pushes share one bound on memory. A failed scrape
//! is logged and counted, and the next one comes on schedule.

use std::sync::Arc;
use std::time::Duration;

use super::AppState;
use crate::ingest::foreign::ScrapeTarget;

/// The longest one pull may take.
const MAX_SCRAPE_TIME: Duration = Duration::from_secs(30);

/// Pulls `target` every `every` until the task is aborted.
pub(super) async fn scrape_loop(state: Arc<AppState>, target: ScrapeTarget, every: Duration) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(every.min(MAX_SCRAPE_TIME)))
        .http_status_as_error(false)
        .user_agent(concat!("heaptide-analyzer/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let Ok(slot) = super::ingest::decode_slot(&state).await else {
            tracing::warn!(url = %target.url, "scrape skipped: every decode slot is busy");
            continue;
        };
        let (st, t, a) = (state.clone(), target.clone(), agent.clone());
        let result = tokio::task::spawn_blocking(move || {
            let r = scrape_once(&st, &t, &a);
            drop(slot);
            r
        })
        .await;
        match result {
            Ok(Ok(())) => state.telemetry.ingest_batches.inc(),
            Ok(Err(why)) => {
                state.telemetry.scrape_failures.inc();
                tracing::warn!(url = %target.url, "scrape failed: {why}");
            }
            Err(_) => tracing::warn!(url = %target.url, "scrape panicked"),
        }
    }
}

fn scrape_once(state: &AppState, target: &ScrapeTarget, agent: &ureq::Agent) -> Result<(), String> {
    let limit = state.limits.max_body_bytes as u64;
    let mut resp = agent.get(&target.url).call().map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    if code != 200 {
        return Err(format!("HTTP {code}"));
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| format!("reading the profile: {e}"))?;
    state.telemetry.ingest_bytes.inc_by(body.len() as u64);
    let now = crate::select::now_ms();
    let mut batch = crate::ingest::foreign::batch(&body, &target.source, &state.limits, now)
        .map_err(|e| e.to_string())?;
    state
        .symbols
        .name_batch(&mut batch, &*state.store, &state.limits.profile)
        .map_err(|e| e.to_string())?;
    state
        .store
        .ingest(&batch, now)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
