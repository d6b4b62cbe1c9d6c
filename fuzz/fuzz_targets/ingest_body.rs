//! `POST /v1/ingest` bodies, plain or gzipped (chosen by the first byte),
//! through the whole decode and validation.
#![no_main]

use heaptide_analyzer::ingest::{decode, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let now_ms = 1_800_000_000_000;
    if let Ok(valid) = decode(body, first & 1 == 1, &Limits::default(), now_ms) {
        let limits = Limits::default().profile;
        let frames: usize = valid
            .profiles
            .iter()
            .flat_map(|p| &p.stacks)
            .map(|s| s.frames.len())
            .sum();
        assert!(frames as u64 <= limits.max_frames);
    }
});
