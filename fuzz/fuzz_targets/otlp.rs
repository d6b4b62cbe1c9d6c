//! OTLP profiles requests, gzipped or not, decoded within the default
//! limits and turned into heap profiles, whose stacks are expanded.
#![no_main]

use heaptide_wire::otlp::{decode, heaps};
use heaptide_wire::pprof::{heap_stacks, DecodeLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    if let Ok(request) = decode(data, &limits) {
        for heap in heaps(&request).heaps {
            if let Ok(stacks) = heap_stacks(&heap.profile, &limits) {
                for s in &stacks {
                    assert!(s.frames.len() as u64 <= limits.max_frames_per_stack);
                }
            }
        }
    }
});
