//! Wire batches for tests, built the way an agent builds them: metric
//! samples, pause events, and heap profiles as real gzipped pprof.

use std::collections::BTreeMap;

use base64::Engine;
use heaptide_wire::pprof::{build_heap_profile, encode_gzip, Frame, ProfileSample};
use heaptide_wire::{
    AgentInfo, AgentStats, Batch, EncodedProfile, HeapProfilingStatus, MetricSample, WIRE_VERSION,
};

/// jemalloc's default sample period, which the agent keeps.
pub const SAMPLE_PERIOD: u64 = 524_288;

/// An agent of `service`/`instance` whose process `pid` started at
/// `start_time_ms`.
pub fn agent(service: &str, instance: &str, pid: u32, start_time_ms: i64) -> AgentInfo {
    AgentInfo {
        service: service.into(),
        instance: instance.into(),
        host: "h".into(),
        pid,
        start_time_ms,
        agent_version: "test".into(),
        labels: BTreeMap::new(),
    }
}

/// An empty batch from `agent`, with heap profiling on at the default
/// period.
pub fn batch(agent: AgentInfo, seq: u64, sent_at_ms: i64) -> Batch {
    Batch {
        version: WIRE_VERSION,
        agent,
        seq,
        sent_at_ms,
        heap_profiling: HeapProfilingStatus {
            enabled: true,
            reason: None,
            sample_period_bytes: Some(SAMPLE_PERIOD),
            unwinder: None,
            unnamed_objects: Vec::new(),
        },
        agent_stats: AgentStats::default(),
        samples: Vec::new(),
        pause_events: Vec::new(),
        profiles: Vec::new(),
    }
}

/// Every metric of one instant.
pub fn metrics(ts_ms: i64, values: &[(&str, f64)]) -> MetricSample {
    MetricSample {
        ts_ms,
        metrics: values.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
    }
}

/// A frame of a stack.
pub fn frame(function: &str, file: &str, line: u32) -> Frame {
    Frame {
        function: function.into(),
        file: file.into(),
        line,
    }
}

/// A stack (leaf first) holding `bytes` in `objects`.
pub fn stack(functions: &[&str], bytes: i64, objects: i64) -> ProfileSample {
    ProfileSample {
        frames: functions
            .iter()
            .map(|f| frame(f, "src/main.rs", 7))
            .collect(),
        objects,
        bytes,
        ..Default::default()
    }
}

/// A heap profile taken at `ts_ms`, encoded as the agent sends it.
pub fn heap_profile(ts_ms: i64, stacks: &[ProfileSample]) -> EncodedProfile {
    let pprof = encode_gzip(&build_heap_profile(
        stacks,
        SAMPLE_PERIOD as i64,
        ts_ms.saturating_mul(1_000_000),
    ));
    EncodedProfile {
        ts_ms,
        sample_period_bytes: SAMPLE_PERIOD,
        pprof_gz_base64: base64::engine::general_purpose::STANDARD.encode(pprof),
        ages: Vec::new(),
    }
}
