//! The size of each file's debug-only form, as an agent uploads it:
//! `cargo run --release -p heaptide-symbols --example debug_only -- FILE...`

use std::io::Read;

fn main() {
    for path in std::env::args().skip(1) {
        let whole = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let Some(mut form) = heaptide_symbols::DebugOnly::open(&path) else {
            println!("{path}: not a 64-bit little-endian ELF file; uploaded whole");
            continue;
        };
        let declared = form.len();
        // Read it through, as an upload does, to count what is sent.
        let sent = std::io::copy(&mut form.by_ref(), &mut std::io::sink()).unwrap_or(0);
        assert_eq!(
            sent, declared,
            "{path}: the stream is not its declared length"
        );
        println!(
            "{path}: {whole} bytes on disk, {declared} uploaded ({:.1}%)",
            declared as f64 * 100.0 / whole.max(1) as f64
        );
    }
}
