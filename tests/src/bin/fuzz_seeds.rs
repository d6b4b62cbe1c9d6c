//! Writes the seed inputs of the fuzz targets: a real batch body and a
//! real pprof profile, as the agent sends them.
//!
//! `cargo run -p heaptide-tests --bin fuzz_seeds -- fuzz/seeds`

use std::path::PathBuf;

use base64::Engine;
use heaptide_testkit::fixtures;

fn main() {
    let dir: PathBuf = std::env::args().nth(1).expect("corpus directory").into();
    let now = 1_800_000_000_000;
    let mut b = fixtures::batch(fixtures::agent("svc", "i-1", 7, now - 60_000), 1, now);
    b.samples.push(fixtures::metrics(
        now,
        &[("fds", 10.0), ("heap.allocated", 1e6)],
    ));
    let stacks = [
        fixtures::stack(&["alloc::alloc::alloc", "leaf", "main"], 4096, 1),
        fixtures::stack(&["other", "main"], 64, 2),
    ];
    b.profiles.push(fixtures::heap_profile(now, &stacks));
    let pprof = base64::engine::general_purpose::STANDARD
        .decode(&b.profiles[0].pprof_gz_base64)
        .unwrap();
    let write = |target: &str, bytes: &[u8]| {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("seed"), bytes).unwrap();
    };
    // The ingest target reads its first byte as "gzipped or not".
    let mut body = vec![0u8];
    body.extend(serde_json::to_vec(&b).unwrap());
    write("ingest_body", &body);
    write("pprof", &pprof);
    write(
        "tokens_toml",
        b"[[token]]\nname = \"agents\"\nkind = \"ingest\"\nsecret = \"0123456789abcdef\"\nservices = [\"billing\"]\n\n[[token]]\nname = \"grafana\"\nkind = \"read\"\nsecret = \"fedcba9876543210\"\n",
    );
    write(
        "session_cookie",
        b"v1:1800000060:grafana:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    );
}
