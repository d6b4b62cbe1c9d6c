//! `/metrics`: each instance's resources and alerts and the analyzer's
//! own health, in the Prometheus text format (version 0.0.4).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, GaugeVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

use super::error::{blocking, ApiResult};
use super::AppState;
use crate::continuous::alerts::{self, State as AlertState};
use crate::error::{Error, Result};
use crate::store::Store;

pub(super) async fn handler(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    let st = state.clone();
    let text = blocking(move || render(&st, crate::select::now_ms())).await?;
    Ok((
        [(header::CONTENT_TYPE, TextEncoder::new().format_type())],
        text,
    )
        .into_response())
}

fn prom(e: prometheus::Error) -> Error {
    Error::invalid("metrics", e.to_string())
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels).map_err(prom)?;
    r.register(Box::new(g.clone())).map_err(prom)?;
    Ok(g)
}

/// The whole exposition at `now_ms`.
pub fn render(state: &AppState, now_ms: i64) -> Result<String> {
    let r = Registry::new();
    for c in state.telemetry.collectors() {
        r.register(c).map_err(prom)?;
    }
    resources(&r, &*state.store, now_ms)?;
    alert_states(&r, &*state.store)?;
    health(&r, state)?;
    symbols(&r, &state.symbols.counts)?;
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&r.gather(), &mut out)
        .map_err(prom)?;
    String::from_utf8(out).map_err(|e| Error::invalid("metrics", e.to_string()))
}

/// Per instance and resource: the value, limit, growth, time to
/// exhaustion and leak state of the last evaluation.
fn resources(r: &Registry, store: &dyn Store, now_ms: i64) -> Result<()> {
    const L: &[&str] = &["service", "instance", "resource", "metric", "unit"];
    let value = gauge(
        r,
        "heaptide_resource_value",
        "The resource's current value, in its unit.",
        L,
    )?;
    let limit = gauge(
        r,
        "heaptide_resource_limit",
        "The limit the resource runs out at, in its unit.",
        L,
    )?;
    let growth = gauge(
        r,
        "heaptide_resource_growth_per_hour",
        "The fitted growth of the resource per hour, in its unit.",
        L,
    )?;
    let tte = gauge(
        r,
        "heaptide_resource_exhaustion_seconds",
        "Seconds until a leaking resource reaches its limit.",
        L,
    )?;
    let leaking = gauge(
        r,
        "heaptide_resource_leaking",
        "1 while the engine judges the resource to leak, else 0.",
        L,
    )?;
    let reporting = gauge(
        r,
        "heaptide_instance_reporting",
        "1 for an instance heard from in the last 2 minutes, else 0.",
        &["service", "instance"],
    )?;
    let evaluated = gauge(
        r,
        "heaptide_instance_evaluated_timestamp_seconds",
        "When the engine last judged the instance.",
        &["service", "instance"],
    )?;
    for i in store.instances(None)? {
        let up = now_ms - i.last_seen_ms < crate::read::query::STALE_AFTER_MS;
        reporting
            .with_label_values(&[&i.service, &i.instance])
            .set(f64::from(u8::from(up)));
    }
    for ((service, instance), k) in crate::continuous::kept_by_instance(store, None)? {
        evaluated
            .with_label_values(&[&service, &instance])
            .set(k.evaluated_ms as f64 / 1000.0);
        for f in &k.findings {
            let l = [
                &*service,
                &instance,
                f.resource.name(),
                &f.metric,
                f.unit.as_str(),
            ];
            let set = |g: &GaugeVec, v: Option<f64>| {
                if let Some(v) = v.filter(|v| v.is_finite()) {
                    g.with_label_values(&l).set(v);
                }
            };
            set(&value, f.current);
            set(&limit, f.limit);
            set(&growth, f.slope_per_hour);
            set(&tte, f.time_to_exhaustion_seconds);
            set(&leaking, Some(f64::from(u8::from(f.verdict.alarms()))));
        }
    }
    Ok(())
}

/// Every pending and firing alert, as Prometheus's own `ALERTS` shows
/// its rules' alerts.
fn alert_states(r: &Registry, store: &dyn Store) -> Result<()> {
    let g = gauge(
        r,
        "heaptide_alerts",
        "1 for each pending or firing alert.",
        &[
            "alertname",
            "alertstate",
            "severity",
            "service",
            "instance",
            "resource",
        ],
    )?;
    let since = gauge(
        r,
        "heaptide_alert_firing_since_timestamp_seconds",
        "When each firing alert started firing.",
        &["alertname", "severity", "service", "instance", "resource"],
    )?;
    for a in alerts::active(store)? {
        let k = &a.key;
        g.with_label_values(&[
            &*k.alertname,
            a.state.name(),
            &a.severity,
            &k.service,
            &k.instance,
            &k.resource,
        ])
        .set(1.0);
        if let (AlertState::Firing, Some(at)) = (a.state, a.starts_at_ms) {
            since
                .with_label_values(&[
                    &*k.alertname,
                    &a.severity,
                    &k.service,
                    &k.instance,
                    &k.resource,
                ])
                .set(at as f64 / 1000.0);
        }
    }
    Ok(())
}

/// The store's size and each webhook's deliveries.
/// What the symbolizer did: passes over debug files (one per build-id and
/// batch of addresses new to the fleet), addresses named, and addresses
/// left unnamed for want of a debug file.
fn symbols(r: &Registry, counts: &crate::symbols::SymbolCounts) -> Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    for (name, help, n) in [
        (
            "heaptide_symbolization_passes_total",
            "Passes over a debug file, each naming addresses no profile of the fleet had named.",
            &counts.passes,
        ),
        (
            "heaptide_symbolized_addresses_total",
            "Addresses named from a debug file.",
            &counts.resolved,
        ),
        (
            "heaptide_unsymbolized_addresses_total",
            "Addresses left unnamed: no debug file is known for their build-id.",
            &counts.missing,
        ),
        (
            "heaptide_debuginfo_uploads_total",
            "Object files agents uploaded when asked, kept as debug files.",
            &counts.uploads,
        ),
    ] {
        let c = IntCounter::new(name, help).map_err(prom)?;
        c.inc_by(n.load(Relaxed));
        r.register(Box::new(c)).map_err(prom)?;
    }
    Ok(())
}

fn health(r: &Registry, state: &AppState) -> Result<()> {
    let size = prometheus::Gauge::new(
        "heaptide_store_size_bytes",
        "The store's file and WAL on disk.",
    )
    .map_err(prom)?;
    size.set(state.store.disk_bytes()? as f64);
    r.register(Box::new(size)).map_err(prom)?;
    let calls = IntCounterVec::new(
        Opts::new(
            "heaptide_webhook_notifications_total",
            "Notifications per webhook, by outcome: delivered, failed (after every retry), retried or dropped (queue full).",
        ),
        &["webhook", "kind", "outcome"],
    )
    .map_err(prom)?;
    r.register(Box::new(calls.clone())).map_err(prom)?;
    let hooks = state
        .telemetry
        .webhooks
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    for (i, (kind, stats)) in hooks.iter().enumerate() {
        let kind = match kind {
            alerts::WebhookKind::Alertmanager => "alertmanager",
            alerts::WebhookKind::Slack => "slack",
        };
        let outcomes = ["delivered", "failed", "retried", "dropped"];
        for (outcome, n) in outcomes.iter().zip(stats.get()) {
            calls
                .with_label_values(&[&i.to_string(), kind, outcome])
                .inc_by(n);
        }
    }
    Ok(())
}
