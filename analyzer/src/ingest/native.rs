//! Decoding and validating `POST /v1/ingest` bodies (see `docs/wire.md`).
//! Nothing reaches the store until the whole batch is known to be sound.

use std::io::Read;

use base64::Engine;
use heaptide_wire::{pprof, valid_metric_name, Batch, WIRE_VERSION};

use crate::error::{Error, Result};

/// A batch that passed validation, with its profiles already decoded: the
/// only form in which data reaches the store.
#[derive(Debug)]
pub struct ValidBatch {
    pub batch: heaptide_wire::Batch,
    /// One entry per `batch.profiles`, in order.
    pub profiles: Vec<DecodedProfile>,
}

/// A heap profile decoded from its [`heaptide_wire::EncodedProfile`].
#[derive(Debug)]
pub struct DecodedProfile {
    /// The gzipped pprof as received.
    pub raw: Vec<u8>,
    pub stacks: Vec<heaptide_wire::pprof::ProfileSample>,
}

/// Size limits of ingest.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body as sent (compressed or not).
    pub max_body_bytes: usize,
    /// Largest body once decoded, gzipped or not.
    pub max_decoded_bytes: u64,
    /// What one profile may hold; `max_frames` and `max_text_bytes` bound
    /// the whole batch.
    pub profile: pprof::DecodeLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 << 20,
            max_decoded_bytes: 4 << 20,
            profile: pprof::DecodeLimits::default(),
        }
    }
}

/// Earliest timestamp accepted: 2000-01-01.
const MIN_TS_MS: i64 = 946_684_800_000;
/// How far ahead of the analyzer's clock an agent's clock may be.
pub(crate) const MAX_CLOCK_SKEW_MS: i64 = 24 * 3_600_000;
// The counts are the wire contract's, enforced while decoding JSON; they
// are checked again here for batches built in code.
use heaptide_wire::bounded::{
    MAX_LABELS, MAX_METRICS_PER_SAMPLE, MAX_PAUSES, MAX_PROFILES, MAX_SAMPLES,
};
const MAX_ABS_VALUE: f64 = 1e18;

/// Decodes and checks one request body. `gzip` says whether the body was
/// sent with `Content-Encoding: gzip`.
pub fn decode(body: &[u8], gzip: bool, limits: &Limits, now_ms: i64) -> Result<ValidBatch> {
    let json: std::borrow::Cow<[u8]> = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take(limits.max_decoded_bytes + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::invalid("body", format!("not valid gzip: {e}")))?;
        out.into()
    } else {
        body.into()
    };
    // One limit on what is parsed, whatever the encoding: a plain body is
    // held to it as a decompressed one is.
    if json.len() as u64 > limits.max_decoded_bytes {
        return Err(Error::invalid(
            "body",
            format!(
                "larger than {} bytes once decoded",
                limits.max_decoded_bytes
            ),
        ));
    }
    // Peek at the version first, so that a future format is reported as an
    // unknown version rather than as its first unknown field.
    if let Ok(v) = serde_json::from_slice::<VersionOnly>(&json) {
        if v.version != Some(u64::from(WIRE_VERSION)) {
            return Err(Error::invalid(
                "version",
                format!(
                    "unsupported wire version {:?}; this analyzer speaks {WIRE_VERSION}",
                    v.version
                ),
            ));
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(&json);
    let batch: Batch = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // An empty path means the body as a whole (a syntax error, say).
        let field = if path == "." || path == "?" {
            "body".to_owned()
        } else {
            path
        };
        Error::invalid(field, e.into_inner().to_string())
    })?;
    accept(batch, limits, now_ms)
}

/// Validates a batch already parsed, and decodes its profiles.
pub fn accept(batch: Batch, limits: &Limits, now_ms: i64) -> Result<ValidBatch> {
    validate(&batch, now_ms)?;
    // The frame and text budgets are the batch's: each profile gets what
    // the ones before it left.
    let mut left = limits.profile.clone();
    let mut profiles = Vec::with_capacity(batch.profiles.len());
    for (i, p) in batch.profiles.iter().enumerate() {
        let decoded = decode_profile(i, p, &left)?;
        for s in &decoded.stacks {
            left.max_frames -= s.frames.len() as u64;
            let text: usize = s
                .frames
                .iter()
                .map(|f| f.function.len() + f.file.len())
                .sum();
            left.max_text_bytes = left.max_text_bytes.saturating_sub(text as u64);
        }
        profiles.push(decoded);
    }
    Ok(ValidBatch { batch, profiles })
}

#[derive(serde::Deserialize)]
struct VersionOnly {
    version: Option<u64>,
}

fn check_ts(field: impl FnOnce() -> String, ts: i64, now_ms: i64) -> Result<()> {
    if ts < MIN_TS_MS || ts > now_ms + MAX_CLOCK_SKEW_MS {
        return Err(Error::invalid(
            field(),
            format!("timestamp {ts} ms is not plausible"),
        ));
    }
    Ok(())
}

fn check_text(field: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {max} bytes without control characters"),
        ));
    }
    Ok(())
}

fn validate(b: &Batch, now_ms: i64) -> Result<()> {
    validate_agent(b, now_ms)?;
    validate_samples(&b.samples, now_ms)?;
    validate_pauses(&b.pause_events, now_ms)?;
    validate_profiles(&b.profiles, now_ms)
}

fn validate_agent(b: &Batch, now_ms: i64) -> Result<()> {
    validate_names(&b.agent)?;
    check_ts(
        || "agent.start_time_ms".into(),
        b.agent.start_time_ms,
        now_ms,
    )?;
    check_ts(|| "sent_at_ms".into(), b.sent_at_ms, now_ms)?;
    if let Some(id) = b
        .heap_profiling
        .unnamed_objects
        .iter()
        .find(|id| !crate::symbols::fill::is_build_id(id))
    {
        return Err(Error::invalid(
            "heap_profiling.unnamed_objects",
            format!("{id:?} is not a build-id (4 to 64 hex digits)"),
        ));
    }
    let s = &b.agent_stats;
    if !s.cpu_seconds.is_finite() || s.cpu_seconds < 0.0 {
        return Err(Error::invalid(
            "agent_stats.cpu_seconds",
            "must be a finite, non-negative number",
        ));
    }
    Ok(())
}

/// Who sends, and their labels, within the bounds every way in shares.
pub(super) fn validate_names(agent: &heaptide_wire::AgentInfo) -> Result<()> {
    check_text("agent.service", &agent.service, 200)?;
    check_text("agent.instance", &agent.instance, 200)?;
    check_text("agent.host", &agent.host, 255)?;
    check_text("agent.agent_version", &agent.agent_version, 64)?;
    if agent.labels.len() > MAX_LABELS {
        return Err(Error::invalid(
            "agent.labels",
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    for (k, v) in &agent.labels {
        check_text(&format!("agent.labels.{k}"), k, 128)?;
        if v.len() > 1024 {
            return Err(Error::invalid(
                format!("agent.labels.{k}"),
                "value longer than 1024 bytes",
            ));
        }
    }
    Ok(())
}

fn validate_samples(samples: &[heaptide_wire::MetricSample], now_ms: i64) -> Result<()> {
    if samples.len() > MAX_SAMPLES {
        return Err(Error::invalid(
            "samples",
            format!("at most {MAX_SAMPLES} per batch"),
        ));
    }
    for (i, sample) in samples.iter().enumerate() {
        check_ts(|| format!("samples[{i}].ts_ms"), sample.ts_ms, now_ms)?;
        if sample.metrics.len() > MAX_METRICS_PER_SAMPLE {
            return Err(Error::invalid(
                format!("samples[{i}].metrics"),
                format!("at most {MAX_METRICS_PER_SAMPLE} metrics per sample"),
            ));
        }
        for (name, v) in &sample.metrics {
            if !valid_metric_name(name) {
                return Err(Error::invalid(
                    format!("samples[{i}].metrics.{name}"),
                    "metric names are 1 to 128 characters of a-z, 0-9, '.', '_' and '-'",
                ));
            }
            if !v.is_finite() || v.abs() > MAX_ABS_VALUE {
                return Err(Error::invalid(
                    format!("samples[{i}].metrics.{name}"),
                    format!("value {v} is not a plausible measurement"),
                ));
            }
        }
    }
    Ok(())
}

fn validate_pauses(pauses: &[heaptide_wire::PauseEvent], now_ms: i64) -> Result<()> {
    if pauses.len() > MAX_PAUSES {
        return Err(Error::invalid(
            "pause_events",
            format!("at most {MAX_PAUSES} per batch"),
        ));
    }
    for (i, p) in pauses.iter().enumerate() {
        check_ts(|| format!("pause_events[{i}].start_ms"), p.start_ms, now_ms)?;
        if !p.duration_ms.is_finite() || !(0.0..=86_400_000.0).contains(&p.duration_ms) {
            return Err(Error::invalid(
                format!("pause_events[{i}].duration_ms"),
                "must be between 0 and one day",
            ));
        }
        if p.name.len() > 256 {
            return Err(Error::invalid(
                format!("pause_events[{i}].name"),
                "longer than 256 bytes",
            ));
        }
    }
    Ok(())
}

fn validate_profiles(profiles: &[heaptide_wire::EncodedProfile], now_ms: i64) -> Result<()> {
    if profiles.len() > MAX_PROFILES {
        return Err(Error::invalid(
            "profiles",
            format!("at most {MAX_PROFILES} per batch"),
        ));
    }
    for (i, p) in profiles.iter().enumerate() {
        check_ts(|| format!("profiles[{i}].ts_ms"), p.ts_ms, now_ms)?;
        if p.sample_period_bytes == 0 || p.sample_period_bytes > 1 << 40 {
            return Err(Error::invalid(
                format!("profiles[{i}].sample_period_bytes"),
                "must be between 1 byte and 1 TiB",
            ));
        }
    }
    Ok(())
}

fn decode_profile(
    i: usize,
    p: &heaptide_wire::EncodedProfile,
    limits: &pprof::DecodeLimits,
) -> Result<DecodedProfile> {
    let field = || format!("profiles[{i}].pprof_gz_base64");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(p.pprof_gz_base64.as_bytes())
        .map_err(|e| Error::invalid(field(), format!("not valid base64: {e}")))?;
    let profile =
        pprof::decode(&raw, limits).map_err(|e| Error::invalid(field(), e.to_string()))?;
    let stacks =
        pprof::heap_stacks(&profile, limits).map_err(|e| Error::invalid(field(), e.to_string()))?;
    for (j, s) in stacks.iter().enumerate() {
        if [s.bytes, s.objects, s.alloc_bytes, s.alloc_objects]
            .iter()
            .any(|v| *v < 0)
        {
            return Err(Error::invalid(
                field(),
                format!("sample {j} has a negative value"),
            ));
        }
        if s.frames.is_empty() {
            return Err(Error::invalid(
                field(),
                format!("sample {j} has {} frames", s.frames.len()),
            ));
        }
    }
    if let Some(a) = p.ages.iter().find(|a| a.sample as usize >= stacks.len()) {
        return Err(Error::invalid(
            format!("profiles[{i}].ages"),
            format!(
                "sample {} is past the profile's {} samples",
                a.sample,
                stacks.len()
            ),
        ));
    }
    Ok(DecodedProfile { raw, stacks })
}
