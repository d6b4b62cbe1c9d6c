//! `examples/ci/soak.sh`, the script the CI workflow calls, run as a user
//! would run it locally: clean routes pass, the leak route fails with exit
//! code 1 and names the leaking function.

use std::process::Command;

use heaptide_tests::bin;

fn soak(routes: &str) -> (Option<i32>, String) {
    let bin_dir = bin("analyzer").parent().unwrap().to_path_buf();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let out = Command::new("bash")
        .arg(root.join("examples/ci/soak.sh"))
        .env("BIN_DIR", bin_dir)
        .env("ROUTES", routes)
        .env("SOAK_SECONDS", "30")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn the_soak_gate_passes_clean_routes() {
    let (code, text) = soak("/work /cache");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("heaptide check: PASS"), "{text}");
}

#[test]
fn the_soak_gate_fails_the_leak_and_names_it() {
    let (code, text) = soak("/work /leak?kb=16");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("heap_growth_per_hour"), "{text}");
    assert!(
        text.contains("leak_request_buffer"),
        "the leaking function is named: {text}"
    );
}
