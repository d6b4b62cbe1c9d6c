//! The quickstart's first command, `analyzer demo`, as the README runs it
//! (here with the binaries of this build, and told to exit once it has
//! reported).

use std::process::Command;

use heaptide_tests::bin;

#[test]
fn the_demo_prints_the_dashboard_and_names_the_leaking_function() {
    let out = Command::new(bin("analyzer"))
        .args(["demo", "--exit-when-found", "--timeout", "4m"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("dashboard:  http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("analyzer leaks"), "{stdout}");
    assert!(
        stdout.contains("leaky_service::leak_request_buffer"),
        "{stdout}"
    );
}
