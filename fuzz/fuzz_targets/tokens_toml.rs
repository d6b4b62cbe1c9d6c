//! `--tokens-file`: any text parses into checked tokens or a named error.
#![no_main]

use heaptide_analyzer::tokens::TokenSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(tokens) = TokenSet::parse(text) {
            for t in tokens {
                assert!(!t.name.is_empty() && t.name.len() <= 64);
            }
        }
    }
});
