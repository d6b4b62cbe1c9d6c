//! Profiles as agents send them by default: frames as addresses of this
//! very binary, in its code mapping with its build-id, for the analyzer
//! to name.

use base64::Engine;
use heaptide_wire::pprof::{self, Frame, ObjectMapping, ProfileSample};
use heaptide_wire::EncodedProfile;

/// This executable's code mapping, as `/proc/self/maps` gives it.
pub fn own_text_mapping() -> ObjectMapping {
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let exe = exe.to_str().unwrap().to_owned();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| l.ends_with(&exe) && l.split_whitespace().nth(1) == Some("r-xp"))
        .expect("this executable's code mapping");
    let f: Vec<&str> = line.split_whitespace().collect();
    let (lo, hi) = f[0].split_once('-').unwrap();
    ObjectMapping {
        memory_start: u64::from_str_radix(lo, 16).unwrap(),
        memory_limit: u64::from_str_radix(hi, 16).unwrap(),
        file_offset: u64::from_str_radix(f[2], 16).unwrap(),
        build_id: heaptide_symbols::build_id(&exe).expect("a build-id"),
        file: exe,
    }
}

/// A heap profile at `now_ms` of one sample per entry of `stacks` (return
/// addresses, leaf first), each of 64 KiB, every frame unnamed.
pub fn unnamed_profile(
    stacks: &[Vec<u64>],
    mapping: &ObjectMapping,
    now_ms: i64,
) -> EncodedProfile {
    let samples: Vec<ProfileSample> = stacks
        .iter()
        .map(|s| ProfileSample {
            frames: s.iter().map(|_| Frame::new("", "", 0)).collect(),
            objects: 1,
            bytes: 65_536,
            ..Default::default()
        })
        .collect();
    let p = pprof::build_native_heap_profile(
        &samples,
        stacks,
        std::slice::from_ref(mapping),
        false,
        524_288,
        now_ms * 1_000_000,
    );
    EncodedProfile {
        ts_ms: now_ms,
        sample_period_bytes: 524_288,
        pprof_gz_base64: base64::engine::general_purpose::STANDARD.encode(pprof::encode_gzip(&p)),
        ages: Vec::new(),
    }
}

/// Posts `batch` to the analyzer `an`, which must store it; returns the
/// build-ids its reply asks this agent to upload.
pub fn posted(an: &crate::Proc, batch: &heaptide_wire::Batch) -> Vec<String> {
    let mut r = crate::http()
        .post(an.url(heaptide_wire::INGEST_PATH))
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(batch).unwrap())
        .unwrap();
    let reply = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status(), 200, "{reply}");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    v[heaptide_wire::DEBUGINFO_WANTED]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| Some(i.as_str()?.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}
