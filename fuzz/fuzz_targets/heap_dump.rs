//! jemalloc `heap_v2` dumps through the agent's parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = heaptide_agent::fuzz_parse_heap_dump(text);
    }
});
