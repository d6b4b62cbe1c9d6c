//! Heap profiles from any pprof source: Go's `/debug/pprof/heap`,
//! `jemalloc_pprof`, or anything else that writes `inuse_objects` and
//! `inuse_space`. Each profile becomes a batch of its own, as if an agent
//! had sent it, so the same store and engine find leaks in services that
//! run no heaptide agent.
//!
//! Such a source sends no resource metrics, so the profile's total
//! `inuse_space` is recorded as the instance's `heap.allocated`: the live
//! heap the profile estimates, which is what the heap leak detector fits.
//! It knows nothing of the process either: every profile of one
//! (`service`, `instance`) counts as one process, and a restart shows as
//! a drop in the heap rather than as a new segment.

use std::collections::BTreeMap;

use heaptide_wire::{
    metric, pprof, AgentInfo, AgentStats, Batch, EncodedProfile, HeapProfilingStatus, MetricSample,
    WIRE_VERSION,
};

use crate::error::{Error, Result};
use crate::ingest::{DecodedProfile, Limits, ValidBatch};

/// Who a foreign profile belongs to, and how it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub service: String,
    pub instance: String,
    /// `push` or the scraped URL, kept as the segment's host.
    pub origin: String,
}

/// A pprof endpoint pulled by `analyzer serve --scrape NAME=URL`: the
/// service is NAME, the instance the URL's `host:port`, as Prometheus
/// names a scrape target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    pub source: Source,
    pub url: String,
}

impl ScrapeTarget {
    /// Parses `NAME=URL`, with an `http://` or `https://` URL.
    pub fn parse(text: &str) -> Result<ScrapeTarget> {
        let bad = |why: &str| Error::invalid("scrape", format!("{text:?}: {why}"));
        let (name, url) = text
            .split_once('=')
            .ok_or_else(|| bad("expected NAME=URL"))?;
        let (name, url) = (name.trim(), url.trim());
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| bad("the URL must start with http:// or https://"))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        if name.is_empty() || host.is_empty() {
            return Err(bad("both a service name and a host are needed"));
        }
        Ok(ScrapeTarget {
            source: Source {
                service: name.into(),
                instance: host.into(),
                origin: url.into(),
            },
            url: url.into(),
        })
    }
}

/// The agent version recorded for foreign profiles.
pub(crate) const FOREIGN_AGENT: &str = "pprof";

/// Decodes `body` (a pprof profile, gzipped or not) into a batch for
/// `source`, within `limits`. `now_ms` dates a profile that carries no
/// time of its own, and numbers the batch.
pub fn batch(body: &[u8], source: &Source, limits: &Limits, now_ms: i64) -> Result<ValidBatch> {
    within_body_limit(body, limits)?;
    let profile = pprof::decode(body, &limits.profile)
        .map_err(|e| Error::invalid("profile", e.to_string()))?;
    let agent = AgentInfo {
        service: source.service.clone(),
        instance: source.instance.clone(),
        host: source.origin.chars().take(200).collect(),
        pid: 0,
        start_time_ms: 0,
        agent_version: FOREIGN_AGENT.into(),
        labels: BTreeMap::new(),
    };
    profile_batch(&profile, agent, limits, now_ms)
}

/// A 400 for a body past the limit, however it came.
pub(crate) fn within_body_limit(body: &[u8], limits: &Limits) -> Result<()> {
    if body.len() > limits.max_body_bytes {
        return Err(Error::invalid(
            "body",
            format!("larger than {} bytes", limits.max_body_bytes),
        ));
    }
    Ok(())
}

/// A batch holding one heap profile of `agent`, as if it had sent it:
/// the profile's stacks, and its total as the instance's live heap.
pub(crate) fn profile_batch(
    profile: &pprof::Profile,
    agent: AgentInfo,
    limits: &Limits,
    now_ms: i64,
) -> Result<ValidBatch> {
    for (field, value) in [("service", &agent.service), ("instance", &agent.instance)] {
        if value.is_empty() || value.len() > 200 || value.chars().any(char::is_control) {
            return Err(Error::invalid(
                field,
                "must be 1 to 200 characters with no control characters",
            ));
        }
    }
    super::native::validate_names(&agent)?;
    let stacks = pprof::heap_stacks(profile, &limits.profile)
        .map_err(|e| Error::invalid("profile", e.to_string()))?;
    // Live memory only: Go's and jemalloc_pprof's `alloc_space` counts
    // since the process started, where stored allocations are what a stack
    // allocated since the previous profile, and one profile alone gives
    // no difference.
    let stacks: Vec<_> = stacks
        .into_iter()
        .filter(|s| s.bytes > 0 && s.objects >= 0 && !s.frames.is_empty())
        .map(|s| pprof::ProfileSample {
            alloc_bytes: 0,
            alloc_objects: 0,
            ..s
        })
        .collect();
    // A profile's own time when it is plausible, else the time it came.
    let ts_ms = Some(profile.time_nanos / 1_000_000)
        .filter(|t| (now_ms - 86_400_000..=now_ms + 60_000).contains(t))
        .unwrap_or(now_ms);
    let live: i64 = stacks.iter().map(|s| s.bytes).sum();
    let period = u64::try_from(profile.period).unwrap_or(0).clamp(1, 1 << 40);
    let raw = pprof::encode_gzip(profile);
    let batch = Batch {
        version: WIRE_VERSION,
        agent,
        seq: u64::try_from(now_ms).unwrap_or(0),
        sent_at_ms: now_ms,
        heap_profiling: HeapProfilingStatus {
            enabled: true,
            reason: None,
            sample_period_bytes: Some(period),
            unwinder: None,
            unnamed_objects: Vec::new(),
        },
        agent_stats: AgentStats::default(),
        samples: vec![MetricSample {
            ts_ms,
            metrics: BTreeMap::from([(metric::HEAP_ALLOCATED.to_owned(), live as f64)]),
        }],
        pause_events: Vec::new(),
        profiles: vec![EncodedProfile {
            ts_ms,
            sample_period_bytes: period,
            // The decoded profile is what the store keeps (`raw`); the
            // base64 form is never read again.
            pprof_gz_base64: String::new(),
            ages: Vec::new(),
        }],
    };
    Ok(ValidBatch {
        batch,
        profiles: vec![DecodedProfile { raw, stacks }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use heaptide_wire::pprof::{build_heap_profile, Frame, ProfileSample};

    fn source() -> Source {
        Source {
            service: "go-api".into(),
            instance: "10.0.0.1:6060".into(),
            origin: "push".into(),
        }
    }

    #[test]
    fn a_profile_becomes_a_batch_with_its_live_heap() {
        let stacks = [ProfileSample {
            frames: vec![Frame::new("main.leak", "main.go", 9)],
            objects: 3,
            bytes: 3000,
            // Since the process started, as Go counts: not kept.
            alloc_objects: 50,
            alloc_bytes: 90_000,
        }];
        let now = 1_800_000_000_000;
        let body = pprof::encode_gzip(&build_heap_profile(&stacks, 524288, now * 1_000_000));
        let v = batch(&body, &source(), &Limits::default(), now + 5).unwrap();
        assert_eq!(v.batch.samples[0].ts_ms, now);
        assert_eq!(v.batch.samples[0].metrics[metric::HEAP_ALLOCATED], 3000.0);
        assert_eq!(
            v.profiles[0].stacks[0].frames[0].function.as_ref(),
            "main.leak"
        );
        assert_eq!(v.batch.profiles[0].sample_period_bytes, 524288);
        let s = &v.profiles[0].stacks[0];
        assert_eq!((s.bytes, s.alloc_bytes, s.alloc_objects), (3000, 0, 0));
    }

    /// `jemalloc_pprof` writes `inuse_space` alone, with addresses for
    /// names when it does not symbolize.
    #[test]
    fn a_profile_with_space_alone_is_taken() {
        use heaptide_wire::pprof::{Location, Sample, ValueType};
        let profile = pprof::Profile {
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            sample: vec![Sample {
                location_id: vec![1],
                value: vec![4096],
            }],
            location: vec![Location {
                id: 1,
                mapping_id: 0,
                address: 0x4010,
                line: vec![],
            }],
            string_table: vec!["".into(), "inuse_space".into(), "bytes".into()],
            period: 524288,
            ..Default::default()
        };
        let body = pprof::encode_gzip(&profile);
        let v = batch(&body, &source(), &Limits::default(), 1_800_000_000_000).unwrap();
        let s = &v.profiles[0].stacks[0];
        assert_eq!((s.bytes, s.objects), (4096, 0));
        assert_eq!(s.frames[0].function.as_ref(), "0x4010");
    }

    #[test]
    fn scrape_targets_are_named_after_their_host() {
        let t = ScrapeTarget::parse("go-api=http://10.0.0.7:6060/debug/pprof/heap").unwrap();
        assert_eq!(t.source.service, "go-api");
        assert_eq!(t.source.instance, "10.0.0.7:6060");
        for bad in ["go-api", "=http://x/", "a=ftp://x/", "a=http:///heap"] {
            let e = ScrapeTarget::parse(bad).unwrap_err();
            assert!(e.to_string().contains("scrape"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_profiles_and_names_are_refused_by_name() {
        let e = batch(b"not a profile", &source(), &Limits::default(), 1).unwrap_err();
        assert!(e.to_string().contains("profile"), "{e}");
        let mut s = source();
        s.instance = String::new();
        let body = pprof::encode_gzip(&build_heap_profile(&[], 1, 0));
        let e = batch(&body, &s, &Limits::default(), 1).unwrap_err();
        assert!(e.to_string().contains("instance"), "{e}");
    }
}
