//! The budget file `analyzer check` reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = heaptide_analyzer::check::budget::BudgetFile::parse(text);
    }
});
