//! OpenTelemetry profiles (`POST /v1development/profiles`, OTLP v1.10.0
//! in protobuf): each resource's memory profile becomes a batch of its
//! own, as a pprof push does (`foreign`), named by the resource's
//! `service.name`, `service.instance.id` and `host.name`, its other
//! attributes kept as labels.

use heaptide_wire::{otlp, AgentInfo};

use crate::error::{Error, Result};
use crate::ingest::{foreign, Limits, ValidBatch};

/// The agent version recorded for OTLP profiles.
pub(crate) const OTLP_AGENT: &str = "otlp";

/// What one request brought: a batch per heap profile, and the profiles
/// not taken (other kinds of profile) with why, for OTLP's partial
/// success.
#[derive(Debug)]
pub struct OtlpBatches {
    pub batches: Vec<ValidBatch>,
    pub rejected: u64,
    pub reasons: Vec<String>,
}

/// Decodes `body`, an `ExportProfilesServiceRequest` (gzipped or not),
/// within `limits`.
pub fn batches(body: &[u8], limits: &Limits, now_ms: i64) -> Result<OtlpBatches> {
    foreign::within_body_limit(body, limits)?;
    let request = otlp::decode(body, &limits.profile)
        .map_err(|e| Error::invalid("request", e.to_string()))?;
    let heaps = otlp::heaps(&request);
    drop(request);
    let batches = heaps
        .heaps
        .iter()
        .map(|heap| {
            let names = &heap.names;
            let agent = AgentInfo {
                service: names.service.clone(),
                instance: names.instance.clone(),
                host: if names.host.is_empty() {
                    OTLP_AGENT.into()
                } else {
                    names.host.clone()
                },
                pid: 0,
                start_time_ms: 0,
                agent_version: OTLP_AGENT.into(),
                labels: names.labels.clone(),
            };
            foreign::profile_batch(&heap.profile, agent, limits, now_ms)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(OtlpBatches {
        batches,
        rejected: heaps.rejected,
        reasons: heaps.reasons,
    })
}

/// The protobuf answer: empty when everything was taken.
pub fn response(rejected: u64, reasons: &[String]) -> Vec<u8> {
    use prost::Message;
    let partial_success = (rejected > 0).then(|| otlp::ExportProfilesPartialSuccess {
        rejected_profiles: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: reasons.join("; "),
    });
    otlp::ExportProfilesServiceResponse { partial_success }.encode_to_vec()
}
