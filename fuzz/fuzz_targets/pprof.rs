//! pprof profiles, gzipped or not, decoded and expanded within the
//! default limits.
#![no_main]

use heaptide_wire::pprof::{decode, heap_stacks, DecodeLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    if let Ok(profile) = decode(data, &limits) {
        if let Ok(stacks) = heap_stacks(&profile, &limits) {
            for s in &stacks {
                assert!(s.frames.len() as u64 <= limits.max_frames_per_stack);
            }
        }
    }
});
