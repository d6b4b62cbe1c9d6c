//! `libheaptide_preload.so` on programs that know nothing of heaptide: a
//! C program and a C++ program built here with the system's compilers,
//! the system's `python3` leaking through a C extension and running
//! clean, a program that forks and execs under allocation load, and a
//! Rust service that links the agent itself. Each streams to a real
//! analyzer, whose `leaks` must name the leak by its C or C++ function,
//! or find nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use heaptide_tests::*;

/// The library, which `cargo test` does not build (a cdylib is no test's
/// dependency): `test.sh` builds it first.
fn library() -> PathBuf {
    let analyzer = bin("analyzer");
    let lib = analyzer.with_file_name("libheaptide_preload.so");
    assert!(
        lib.exists(),
        "{} is missing: build it with `cargo build -p heaptide-preload` (test.sh does)",
        lib.display()
    );
    lib
}

fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("preload")
        .join(name)
}

/// Builds `src` with `compiler` into `dir`, with debug info for file:line.
fn compile(dir: &Path, compiler: &str, src: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(src.replace('.', "_"));
    let status = Command::new(compiler)
        .args(["-O2", "-g", "-o"])
        .arg(&out)
        .arg(source(src))
        .args(extra)
        .status()
        .unwrap_or_else(|e| panic!("{compiler}: {e}"));
    assert!(status.success(), "{compiler} {src} failed");
    out
}

/// `cmd` under the preload library, streaming to `endpoint` as `instance`
/// with the fast intervals of the other end-to-end tests.
fn preloaded(mut cmd: Command, endpoint: &str, instance: &str) -> Command {
    cmd.env("LD_PRELOAD", library())
        .env("HEAPTIDE_ENDPOINT", endpoint)
        .env("HEAPTIDE_INSTANCE", instance)
        .env("HEAPTIDE_INTERVAL", "200ms")
        .env("HEAPTIDE_PROFILE_INTERVAL", "1s")
        .env("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB");
    cmd
}

/// Runs `cmd` to its end and returns its stdout; it must succeed.
fn run(mut cmd: Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The findings about `instance` in `leaks`.
fn findings_of<'a>(v: &'a serde_json::Value, instance: &str) -> Vec<&'a serde_json::Value> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["instance"] == instance)
        .collect()
}

/// The heap finding of `instance`, and its top site's first frame of the
/// program's own.
fn heap_site(v: &serde_json::Value, instance: &str) -> (String, serde_json::Value) {
    let heap = findings_of(v, instance)
        .into_iter()
        .find(|f| f["resource"] == "heap")
        .unwrap_or_else(|| panic!("no heap finding for {instance}: {v:#}"));
    let (frames, app) = top_site(heap);
    (frames[app].to_owned(), heap.clone())
}

#[test]
fn a_c_leak_is_found_and_named_by_its_c_function_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let exe = compile(dir.path(), "cc", "leak.c", &[]);
    let mut cmd = Command::new(exe);
    cmd.arg("30");
    let out = run(preloaded(cmd, &format!("http://{}", an.addr), "c"));
    assert!(out.starts_with("leaked"), "{out}");
    let v = leaks_json(&store);
    let (app, heap) = heap_site(&v, "c");
    assert_eq!(app, "leak_buffer", "{heap:#}");
    let at = heap["sites"][0]["app_location"]
        .as_str()
        .unwrap_or_default();
    assert!(
        at.ends_with("preload/leak.c:14"),
        "the malloc call's line: {heap:#}"
    );
    assert_eq!(v["findings"][0]["service"], "leak_c", "{v:#}");
}

#[test]
fn a_cpp_leak_is_named_by_its_qualified_demangled_method() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let exe = compile(dir.path(), "g++", "leak.cc", &[]);
    let mut cmd = Command::new(exe);
    cmd.arg("30");
    let out = run(preloaded(cmd, &format!("http://{}", an.addr), "cpp"));
    assert!(out.starts_with("done 4096"), "{out}");
    let (app, heap) = heap_site(&leaks_json(&store), "cpp");
    assert_eq!(app, "shop::Ledger::record", "{heap:#}");
}

#[test]
fn python_leaking_through_a_c_extension_is_found_and_running_clean_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let endpoint = format!("http://{}", an.addr);
    let script = source("python_leak.py");
    let python = |instance: &str, clean: bool| {
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg("35");
        if clean {
            cmd.arg("--clean");
        }
        preloaded(cmd, &endpoint, instance)
    };
    let leaking = std::thread::spawn({
        let cmd = python("py-leak", false);
        move || run(cmd)
    });
    let clean = run(python("py-clean", true));
    let leaked = leaking.join().unwrap();
    assert!(leaked.starts_with("kept ") && clean.starts_with("kept 0"));
    let v = leaks_json(&store);
    // ctypes calls malloc through libffi: the first frame that is not the
    // allocator's is libffi's call, then ctypes' own.
    let (app, heap) = heap_site(&v, "py-leak");
    assert!(
        app.starts_with("ffi_call") || app.contains("ctypes"),
        "{heap:#}"
    );
    assert_eq!(
        findings_of(&v, "py-clean"),
        Vec::<&serde_json::Value>::new()
    );
}

#[test]
fn forks_and_execs_under_allocation_load_leave_no_hung_or_crashed_child() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let exe = compile(dir.path(), "cc", "forker.c", &["-pthread"]);
    let mut cmd = Command::new(exe);
    cmd.arg("1000");
    // The program exits non-zero on any hung or crashed child.
    let out = run(preloaded(cmd, &format!("http://{}", an.addr), "forker"));
    assert_eq!(out.trim(), "forks 1000 hung 0 crashed 0");
    // The parent's agent sampled through it all, its four threads among
    // the process's.
    let v = an.get_json("/v1/series?service=forker_c&instance=forker&metric=threads&since=10m");
    let points = v["points"].as_array().map_or(0, |p| p.len());
    assert!(points >= 10, "{v:#}");
    let most = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["value"].as_f64());
    assert!(most.fold(0.0, f64::max) >= 8.0, "{v:#}");
}

#[test]
fn a_service_that_links_the_agent_runs_one_agent_under_the_preload() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let svc = leaky(
        dir.path(),
        &format!("http://{}", an.addr),
        "linked",
        &[
            ("LD_PRELOAD", library().to_str().unwrap()),
            // Every stack of a small heap in the profile.
            ("HEAPTIDE_HEAP_SAMPLE_PERIOD", "4KiB"),
        ],
    );
    // Past the preloaded agent's start delay. On a busy host the program
    // may reach its own agent's start after the preloaded one started;
    // that one then stops, and its threads end.
    let samplers = || {
        std::fs::read_dir(format!("/proc/{}/task", svc.pid()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|c| c.trim() == "heaptide-sample")
            .count()
    };
    std::thread::sleep(heaptide_preload_delay() * 2);
    wait_for(
        "one agent, the linked one",
        std::time::Duration::from_secs(15),
        || (samplers() == 1).then_some(()),
    );
    // And it stays one.
    std::thread::sleep(heaptide_preload_delay() * 2);
    assert_eq!(samplers(), 1, "one agent, the linked one");
    // The linked agent's heap profile shows the program's Rust heap, which
    // the preloaded jemalloc never serves.
    for _ in 0..3 {
        assert_eq!(get(&svc.url("/leak?kb=256")).0, 200);
    }
    wait_for(
        "the linked agent's profile",
        std::time::Duration::from_secs(30),
        || {
            let (code, body) =
                an.get("/v1/profile?service=leaky-service&instance=linked&format=json");
            (code == 200 && body.contains("leak_request_buffer")).then_some(())
        },
    );
}

/// How long the preloaded agent waits before it starts (its `START_DELAY`).
fn heaptide_preload_delay() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}
