//! The upload thread: batches queued items and POSTs them, retrying with
//! capped exponential backoff and full jitter.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use heaptide_wire::{Batch, WIRE_VERSION};

use crate::kept::{out_of_descriptors, Spare};
use crate::queue::Item;
use crate::runtime::Shared;

/// Largest batch the sender builds, before compression.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Failed uploads allowed while flushing at exit, and the pause between.
const MAX_FLUSH_ATTEMPTS: u32 = 3;
const FLUSH_RETRY_PAUSE: Duration = Duration::from_millis(200);
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

enum Outcome {
    /// Stored; the analyzer may ask for debug files of these build-ids.
    Sent(Vec<String>),
    /// Worth retrying, after at least this long if the server said so.
    Retry(Option<Duration>),
    /// The analyzer refused the batch; sending it again will not help.
    Rejected(u16),
}

/// A batch ready to send, and what a refusal of it would keep.
struct Sealed {
    /// The gzipped JSON body.
    body: Vec<u8>,
    items: u64,
    bytes: u64,
    profiles: u64,
    /// Its metrics and pauses, when it holds profiles: what is sent again
    /// if the analyzer refuses it.
    rest: Vec<Item>,
}

pub(crate) struct Sender {
    shared: Arc<Shared>,
    http: ureq::Agent,
    /// Held for a connection at the fd limit.
    spare: Spare,
    url: String,
    seq: u64,
}

impl Sender {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        // A pooled connection outlives a few intervals, so that a process
        // at its fd limit, which can open no new one, keeps sending.
        let idle =
            (shared.config.interval * 3).clamp(Duration::from_secs(60), Duration::from_secs(600));
        // The CA file was read when the settings were checked; should it
        // fail now, trust nothing rather than something broader.
        let roots = match &shared.config.ca_file {
            Some(path) => crate::config::transport::roots_from(path).unwrap_or_else(|e| {
                tracing::error!("heaptide: {e}; no https connection will be trusted");
                ureq::tls::RootCerts::new_with_certs(&[])
            }),
            None => ureq::tls::RootCerts::PlatformVerifier,
        };
        let tls = ureq::tls::TlsConfig::builder().root_certs(roots).build();
        let http: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(shared.config.send_timeout))
            .max_idle_age(idle)
            .http_status_as_error(false)
            .user_agent(concat!("heaptide-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let url = format!("{}{}", shared.config.endpoint, heaptide_wire::INGEST_PATH);
        Sender {
            shared,
            http,
            url,
            seq: 0,
            spare: Spare::hold(),
        }
    }

    pub(crate) fn run(mut self) {
        let shared = self.shared.clone();
        let mut attempt = 0u32;
        let mut flush_attempts = 0u32;
        let mut pending: Option<Sealed> = None;
        loop {
            if pending.is_none() && shared.queue.is_closed_and_empty() {
                break;
            }
            if let Some(deadline) = shared.flush_deadline() {
                if Instant::now() >= deadline {
                    break;
                }
            }
            if pending.is_none() {
                let items = shared.queue.take(MAX_BATCH_BYTES, shared.config.interval);
                if items.is_empty() {
                    shared.thread_costs.sender.update();
                    continue;
                }
                self.seq += 1;
                pending = Some(self.seal(items));
            }
            let Some(sealed) = pending.as_mut() else {
                continue;
            };
            match self.post(&sealed.body) {
                Outcome::Sent(wanted) => {
                    pending = None;
                    attempt = 0;
                    crate::upload::start(&shared, &self.http, wanted);
                }
                Outcome::Rejected(status) => {
                    pending = self.without_profiles(sealed, status);
                    attempt = 0;
                }
                Outcome::Retry(after) => {
                    shared.send_failures.fetch_add(1, Ordering::Relaxed);
                    attempt = attempt.saturating_add(1);
                    if let Some(deadline) = shared.flush_deadline() {
                        // At exit, a few spaced attempts and no more: a
                        // process that finished its work must not spin on
                        // an analyzer that is gone.
                        flush_attempts += 1;
                        if flush_attempts >= MAX_FLUSH_ATTEMPTS {
                            break;
                        }
                        let left = deadline.saturating_duration_since(Instant::now());
                        std::thread::sleep(FLUSH_RETRY_PAUSE.min(left));
                        continue;
                    }
                    let delay = backoff(attempt, after);
                    tracing::debug!(?delay, attempt, "heaptide upload failed; retrying");
                    shared.sleep_unless_stopping(delay);
                }
            }
            shared.thread_costs.sender.update();
        }
        if let Some(sealed) = pending {
            shared.queue.count_dropped(sealed.items, sealed.bytes);
        }
        shared.thread_costs.sender.update();
    }

    /// What is left of a batch the analyzer refused: its metrics and
    /// pauses alone, sealed again under the same `seq`, when it held
    /// profiles (a large profile is the likely cause, and the metrics are
    /// what a leak's verdict needs); nothing when it held none. What is
    /// given up is counted as dropped.
    fn without_profiles(&self, sealed: &mut Sealed, status: u16) -> Option<Sealed> {
        let rest = std::mem::take(&mut sealed.rest);
        let kept = rest.len() as u64;
        // Only a refusal of the body itself (400 invalid, 413 too large)
        // may be the profiles' doing; a token or a bound refuses any batch.
        let about_the_body = matches!(status, 400 | 413);
        if !about_the_body || sealed.profiles == 0 || rest.is_empty() {
            tracing::warn!(status, "heaptide analyzer rejected a batch; dropping it");
            self.shared.queue.count_dropped(sealed.items, sealed.bytes);
            return None;
        }
        tracing::warn!(
            status,
            profiles = sealed.profiles,
            "heaptide analyzer rejected a batch; sending its metrics without its profiles"
        );
        let again = self.seal(rest);
        self.shared
            .queue
            .count_dropped(sealed.items - kept, sealed.bytes - again.bytes);
        Some(again)
    }

    /// Builds and compresses a batch under the current `seq`. Retries of
    /// one batch carry the same `seq`, so the analyzer can ignore a replay
    /// whose acknowledgement was lost.
    fn seal(&self, items: Vec<Item>) -> Sealed {
        let n_items = items.len() as u64;
        let n_bytes: u64 = items.iter().map(|i| i.size() as u64).sum();
        let is_profile = |i: &&Item| matches!(i, Item::Profile(_));
        let profiles = items.iter().filter(is_profile).count() as u64;
        // Kept only while a profile could be what gets the batch refused.
        let rest: Vec<Item> = if profiles > 0 {
            items.iter().filter(|i| !is_profile(i)).cloned().collect()
        } else {
            Vec::new()
        };
        let mut batch = Batch {
            version: WIRE_VERSION,
            agent: self.shared.agent_info.clone(),
            seq: self.seq,
            sent_at_ms: crate::runtime::now_ms(),
            heap_profiling: self.shared.heap_profiling_status(),
            agent_stats: self.shared.agent_stats(),
            samples: Vec::new(),
            pause_events: Vec::new(),
            profiles: Vec::new(),
        };
        for item in items {
            match item {
                Item::Metrics(s) => batch.samples.push(s),
                Item::Pause(p) => batch.pause_events.push(p),
                Item::Profile(p) => batch.profiles.push(p),
            }
        }
        let json = serde_json::to_vec(&batch).unwrap_or_default();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = gz.write_all(&json);
        Sealed {
            body: gz.finish().unwrap_or_default(),
            items: n_items,
            bytes: n_bytes,
            profiles,
            rest,
        }
    }

    /// Posts a batch. At the fd limit, a new connection cannot be made:
    /// the spare descriptor is given up for it, once.
    fn post(&mut self, body: &[u8]) -> Outcome {
        match self.send(body) {
            Err(ureq::Error::Io(e)) if out_of_descriptors(&e) && self.spare.is_held() => {
                tracing::debug!("heaptide: out of descriptors; connecting on the spare");
                self.spare.release();
                let outcome = self.send(body);
                self.spare = Spare::hold();
                Self::outcome(outcome)
            }
            r => Self::outcome(r),
        }
    }

    fn send(&self, body: &[u8]) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut req = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip");
        if let Some(token) = &self.shared.config.token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        req.send(body)
    }

    fn outcome(sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Outcome {
        match sent {
            Ok(mut resp) => {
                // Read to the end, so that the connection goes back to the
                // pool: a process at its fd limit cannot open another.
                let body = resp.body_mut().with_config().limit(64 << 10).read_to_vec();
                let status = resp.status().as_u16();
                match status {
                    200..=299 => Outcome::Sent(wanted(&body.unwrap_or_default())),
                    429 | 503 => Outcome::Retry(
                        resp.headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(|s| Duration::from_secs(s.min(3600))),
                    ),
                    408 | 500..=599 => Outcome::Retry(None),
                    _ => Outcome::Rejected(status),
                }
            }
            Err(_) => Outcome::Retry(None),
        }
    }
}

/// The build-ids a batch's reply asks this agent to upload.
fn wanted(reply: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(reply).unwrap_or_default();
    v[heaptide_wire::DEBUGINFO_WANTED]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"): a
/// uniform delay up to the capped exponential, so that many agents failing
/// together do not retry together. A server's `Retry-After` is a floor, with
/// up to half again of jitter on top for the same reason.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    let jitter = exp.mul_f64(fastrand::f64());
    match retry_after {
        Some(floor) => floor + floor.mul_f64(fastrand::f64() * 0.5),
        None => jitter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_jittered_and_honours_retry_after() {
        let delays: Vec<Duration> = (0..200).map(|_| backoff(20, None)).collect();
        assert!(delays.iter().all(|d| *d <= BACKOFF_CAP));
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 150, "delays must not be in lockstep");
        for _ in 0..100 {
            let d = backoff(1, Some(Duration::from_secs(2)));
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_secs(3));
        }
        assert!(backoff(0, None) <= BACKOFF_BASE);
    }
}
