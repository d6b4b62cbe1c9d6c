//! Delivery to webhooks. Each webhook has its own thread and a bounded
//! queue: evaluation hands a notification over without waiting, a full
//! queue is a counted drop, and a slow or failing receiver delays only its
//! own deliveries. Failed calls are retried with doubling backoff.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use super::payload;
use super::rules::{WebhookConfig, WebhookKind};
use super::state::Alert;
use crate::error::{Error, Result};

/// Notifications waiting per webhook; past it, new ones are dropped.
const QUEUE: usize = 64;
/// Calls per notification before it counts as failed.
const ATTEMPTS: u32 = 4;
/// The first retry's wait; each next one doubles.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A webhook ready to call: its config, checked, with the token read.
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    pub token: Option<String>,
    pub kind: WebhookKind,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Slack's URLs are secrets, and so are tokens: only the host shows.
        f.debug_struct("Webhook")
            .field("host", &host_of(&self.url))
            .field("kind", &self.kind)
            .finish()
    }
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or("")
}

impl Webhook {
    /// Checks the URL and reads the token file; errors name the webhook.
    pub fn from_config(c: &WebhookConfig) -> Result<Webhook> {
        let field = "alerts.webhook.url";
        let scheme_ok = c.url.starts_with("http://") || c.url.starts_with("https://");
        let parsed = c.url.parse::<axum::http::Uri>();
        if !scheme_ok || parsed.as_ref().map_or(true, |u| u.host().is_none()) {
            return Err(Error::invalid(
                field,
                format!("{:?} is not an http:// or https:// URL with a host", c.url),
            ));
        }
        let token = match &c.token_file {
            None => None,
            Some(path) => {
                let t = std::fs::read_to_string(path).map_err(|e| {
                    Error::invalid(
                        "alerts.webhook.token_file",
                        format!("{}: {e}", path.display()),
                    )
                })?;
                Some(t.trim().to_owned()).filter(|t| !t.is_empty())
            }
        };
        Ok(Webhook {
            url: c.url.clone(),
            token,
            kind: c.kind,
        })
    }
}

/// What one webhook's deliveries came to.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub delivered: AtomicU64,
    /// Notifications given up after every attempt failed.
    pub failed: AtomicU64,
    /// Calls that failed and were tried again.
    pub retried: AtomicU64,
    /// Notifications dropped because the queue was full.
    pub dropped: AtomicU64,
}

impl DeliveryStats {
    /// Notifications that reached nobody: failed or dropped.
    pub fn undelivered(&self) -> u64 {
        self.failed.load(Ordering::Relaxed) + self.dropped.load(Ordering::Relaxed)
    }

    /// Delivered, failed, retried and dropped, in that order.
    pub fn get(&self) -> [u64; 4] {
        [&self.delivered, &self.failed, &self.retried, &self.dropped]
            .map(|c| c.load(Ordering::Relaxed))
    }
}

struct Sink {
    hook: Webhook,
    queue: SyncSender<Vec<u8>>,
    stats: Arc<DeliveryStats>,
}

/// Sends notifications to every webhook, off the caller's thread.
pub struct Notifier {
    sinks: Vec<Sink>,
    external_url: String,
}

impl Notifier {
    /// Starts one delivery thread per webhook. They end when the notifier
    /// is dropped and their queues are drained.
    pub fn start(hooks: Vec<Webhook>, external_url: String) -> Result<Notifier> {
        let mut sinks = Vec::new();
        for (i, hook) in hooks.into_iter().enumerate() {
            let (tx, rx) = sync_channel(QUEUE);
            let stats = Arc::new(DeliveryStats::default());
            let (h, s) = (hook.clone(), stats.clone());
            std::thread::Builder::new()
                .name(format!("heaptide-webhook-{i}"))
                .spawn(move || deliver_all(&h, &rx, &s))?;
            sinks.push(Sink {
                hook,
                queue: tx,
                stats,
            });
        }
        Ok(Notifier {
            sinks,
            external_url,
        })
    }

    /// Each webhook's kind and stats, in config order.
    pub fn stats(&self) -> Vec<(WebhookKind, Arc<DeliveryStats>)> {
        self.sinks
            .iter()
            .map(|s| (s.hook.kind, s.stats.clone()))
            .collect()
    }

    /// Queues `alerts` for every webhook, one notification per service.
    /// Never waits.
    pub fn notify(&self, alerts: &[Alert]) {
        let mut by_service: std::collections::BTreeMap<&str, Vec<Alert>> = Default::default();
        for a in alerts {
            by_service
                .entry(&a.key.service)
                .or_default()
                .push(a.clone());
        }
        for group in by_service.values() {
            for sink in &self.sinks {
                let group: Vec<Alert> = if sink.hook.kind.inhibits() {
                    group.clone()
                } else {
                    group.iter().filter(|a| !a.outranked).cloned().collect()
                };
                if group.is_empty() {
                    continue;
                }
                let group = &group[..];
                let body = match sink.hook.kind {
                    WebhookKind::Alertmanager => payload::alertmanager(&self.external_url, group),
                    WebhookKind::Slack => payload::slack(&self.external_url, group),
                };
                let bytes = body.to_string().into_bytes();
                match sink.queue.try_send(bytes) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                        sink.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

fn deliver_all(hook: &Webhook, rx: &Receiver<Vec<u8>>, stats: &DeliveryStats) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(CALL_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    while let Ok(body) = rx.recv() {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            match call(&agent, hook, &body) {
                Outcome::Delivered => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Outcome::Refused(why) => {
                    tracing::warn!(?hook, "webhook refused a notification: {why}");
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Outcome::Retry(why) if attempt == ATTEMPTS => {
                    tracing::warn!(?hook, "webhook failed {ATTEMPTS} times: {why}");
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Retry(_) => {
                    stats.retried.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(backoff);
                    backoff *= 2;
                }
            }
        }
    }
}

enum Outcome {
    Delivered,
    /// A 4xx other than 408 and 429: sending it again would not help.
    Refused(String),
    Retry(String),
}

fn call(agent: &ureq::Agent, hook: &Webhook, body: &[u8]) -> Outcome {
    let mut req = agent
        .post(&hook.url)
        .header("Content-Type", "application/json")
        .header(
            "User-Agent",
            concat!("heaptide-analyzer/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(t) = &hook.token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    match req.send(body) {
        Ok(resp) => {
            let code = resp.status().as_u16();
            match code {
                200..=299 => Outcome::Delivered,
                408 | 429 | 500..=599 => Outcome::Retry(format!("HTTP {code}")),
                _ => Outcome::Refused(format!("HTTP {code}")),
            }
        }
        Err(e) => Outcome::Retry(e.to_string()),
    }
}
