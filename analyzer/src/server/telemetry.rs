//! The analyzer's own health, as `/metrics` exports it: ingest, evaluation
//! and webhook delivery.

use std::sync::{Arc, Mutex};

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};

use crate::continuous::alerts::notify::DeliveryStats;
use crate::continuous::alerts::WebhookKind;

/// Why ingest refused a batch: the `reason` label.
pub const REJECTION_REASONS: [&str; 7] = [
    "unauthorized",
    "too_large",
    "bad_encoding",
    "invalid",
    "rate_limited",
    "store_error",
    "other",
];

/// Counters and histograms the server updates as it works.
pub struct Telemetry {
    pub ingest_batches: IntCounter,
    pub ingest_bytes: IntCounter,
    pub ingest_rejections: IntCounterVec,
    pub ingest_seconds: Histogram,
    pub evaluation_seconds: Histogram,
    pub evaluation_failures: IntCounter,
    pub evaluation_last_seconds: Gauge,
    pub evaluation_judged: Histogram,
    pub evaluation_behind: IntGauge,
    /// Pulls of `--scrape` targets that failed.
    pub scrape_failures: IntCounter,
    /// Metrics dropped from batches because their name was new past a cap.
    pub metric_names_refused: IntCounter,
    /// Token reloads on SIGHUP, by outcome (`ok`, `failed`).
    pub token_reloads: IntCounterVec,
    /// Open, refused and timed-out connections.
    pub connections: super::conn::ConnectionMeters,
    /// Each webhook's delivery counts, in config order.
    pub webhooks: Mutex<Vec<(WebhookKind, Arc<DeliveryStats>)>>,
}

// The definitions below are literals: prometheus refuses only malformed
// names, which the unit test at the end would catch before any release.
fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("literal metric definition")
}

impl Default for Telemetry {
    fn default() -> Self {
        let rejections = IntCounterVec::new(
            Opts::new(
                "heaptide_ingest_rejections_total",
                "Batches ingest refused, by reason.",
            ),
            &["reason"],
        )
        .expect("literal metric definition");
        for r in REJECTION_REASONS {
            rejections.with_label_values(&[r]);
        }
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("literal metric definition")
        };
        Telemetry {
            ingest_batches: counter("heaptide_ingest_batches_total", "Batches ingested."),
            ingest_bytes: counter(
                "heaptide_ingest_bytes_total",
                "Bytes of ingested request bodies, as sent.",
            ),
            ingest_rejections: rejections,
            ingest_seconds: histogram(
                "heaptide_ingest_duration_seconds",
                "Time to accept one batch, from request to answer.",
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            ),
            evaluation_seconds: histogram(
                "heaptide_evaluation_duration_seconds",
                "Time one evaluation pass takes, findings and alerts.",
                vec![0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0],
            ),
            evaluation_failures: counter(
                "heaptide_evaluation_failures_total",
                "Evaluation passes that failed.",
            ),
            evaluation_last_seconds: Gauge::new(
                "heaptide_evaluation_last_duration_seconds",
                "Time the last full evaluation pass took, findings and alerts' conditions.",
            )
            .expect("literal metric definition"),
            evaluation_judged: histogram(
                "heaptide_evaluation_instances_judged",
                "Instances one evaluation pass judged (those with new data).",
                vec![0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0],
            ),
            evaluation_behind: IntGauge::new(
                "heaptide_evaluation_behind",
                "1 while the last full evaluation pass took longer than the interval between passes.",
            )
            .expect("literal metric definition"),
            scrape_failures: counter(
                "heaptide_scrape_failures_total",
                "Pulls of pprof scrape targets that failed.",
            ),
            metric_names_refused: counter(
                "heaptide_ingest_metric_names_refused_total",
                "Metrics dropped from batches because their name was new past the cap on distinct names (per instance or in all).",
            ),
            token_reloads: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "heaptide_token_reloads_total",
                        "Token files read again on SIGHUP, by outcome; a failed reload keeps the tokens in force.",
                    ),
                    &["outcome"],
                )
                .expect("literal metric definition");
                for o in ["ok", "failed"] {
                    c.with_label_values(&[o]);
                }
                c
            },
            connections: connection_meters(),
            webhooks: Mutex::new(Vec::new()),
        }
    }
}

fn connection_meters() -> super::conn::ConnectionMeters {
    let refused = IntCounterVec::new(
        Opts::new(
            "heaptide_http_connections_refused_total",
            "Connections closed as soon as accepted, by the cap that refused them.",
        ),
        &["reason"],
    )
    .expect("literal metric definition");
    for r in super::conn::REFUSAL_REASONS {
        refused.with_label_values(&[r]);
    }
    super::conn::ConnectionMeters {
        open: IntGauge::new(
            "heaptide_http_connections_open",
            "Connections open now.",
        )
        .expect("literal metric definition"),
        refused,
        timed_out: counter(
            "heaptide_http_connections_timed_out_total",
            "Connections closed by a deadline: headers too slow, idle too long, or a response not read.",
        ),
    }
}

impl Telemetry {
    /// Counts a refused batch under the reason its status gives.
    pub fn reject(&self, status: axum::http::StatusCode) {
        let reason = match status.as_u16() {
            401 | 403 => "unauthorized",
            413 => "too_large",
            415 => "bad_encoding",
            400 | 422 => "invalid",
            429 => "rate_limited",
            500..=599 => "store_error",
            _ => "other",
        };
        self.ingest_rejections.with_label_values(&[reason]).inc();
    }

    /// Every collector, for one scrape's registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.ingest_batches.clone()),
            Box::new(self.ingest_bytes.clone()),
            Box::new(self.ingest_rejections.clone()),
            Box::new(self.ingest_seconds.clone()),
            Box::new(self.evaluation_seconds.clone()),
            Box::new(self.evaluation_failures.clone()),
            Box::new(self.evaluation_last_seconds.clone()),
            Box::new(self.evaluation_judged.clone()),
            Box::new(self.evaluation_behind.clone()),
            Box::new(self.scrape_failures.clone()),
            Box::new(self.metric_names_refused.clone()),
            Box::new(self.token_reloads.clone()),
            Box::new(self.connections.open.clone()),
            Box::new(self.connections.refused.clone()),
            Box::new(self.connections.timed_out.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use prometheus::core::Collector;

    #[test]
    fn every_metric_is_defined() {
        let t = super::Telemetry::default();
        assert_eq!(t.collectors().len(), 15);
        assert_eq!(
            t.ingest_batches.desc()[0].fq_name,
            "heaptide_ingest_batches_total"
        );
    }
}
