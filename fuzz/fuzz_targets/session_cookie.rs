//! Session cookies: any value verifies only if it was signed, and one
//! signed for a name always verifies to that name.
#![no_main]

use std::sync::OnceLock;

use heaptide_analyzer::session::SessionKey;
use libfuzzer_sys::fuzz_target;

const NOW_S: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    static KEY: OnceLock<SessionKey> = OnceLock::new();
    let key = KEY.get_or_init(|| SessionKey::random().expect("randomness"));
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert!(key.verify(text, NOW_S).is_none() || text.starts_with("v1:"));
    let name: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(64)
        .collect();
    let signed = key.sign(&name, NOW_S + 60);
    assert_eq!(key.verify(&signed, NOW_S), Some(name.as_str()));
});
