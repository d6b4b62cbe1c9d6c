//! pprof both ways, with real processes: the agent's heap profiles open in
//! Go's own `go tool pprof`, with addresses, mappings and build-ids that
//! let it symbolize them again; and heap profiles of a real Go service
//! that leaks, pushed to `/v1/ingest/pprof` or pulled with `--scrape`,
//! are judged by the same engine, which names the Go function.
//!
//! Needs Go (`golang-go`), which `test.sh` installs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use heaptide_tests::*;

fn go() -> Command {
    let mut cmd = Command::new("go");
    // A writable cache of its own when the environment has no home.
    if std::env::var_os("HOME").is_none() {
        cmd.env("GOCACHE", std::env::temp_dir().join("heaptide-go-cache"));
    }
    cmd
}

fn run(mut cmd: Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}; install golang-go (test.sh does)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pprof_tool(args: &[&str], file: &Path) -> String {
    let mut cmd = go();
    cmd.args(["tool", "pprof"]).args(args).arg(file);
    run(cmd)
}

/// The GNU build-id of the file at `path`, in hex.
fn build_id(path: &Path) -> String {
    use object::Object;
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let id = file.build_id().unwrap().expect("the binary has a build-id");
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn agent_profiles_open_in_go_tool_pprof_with_addresses_and_build_ids() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &[]);
    let svc = leaky(
        dir.path(),
        &format!("http://{}", an.addr),
        "pp",
        &[
            ("HEAPTIDE_PROFILE_INTERVAL", "1s"),
            ("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB"),
        ],
    );
    for _ in 0..150 {
        assert_eq!(get(&svc.url("/leak?kb=16")).0, 200);
    }
    let query = "/v1/profile?service=leaky-service&instance=pp";
    wait_for("a profile naming the leak", Duration::from_secs(30), || {
        let (code, body) = an.get(&format!("{query}&format=json"));
        (code == 200 && body.contains("leak_request_buffer")).then_some(())
    });
    let bytes = http()
        .get(&an.url(&format!("{query}&format=pprof")))
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    let file = dir.path().join("leaky.pb.gz");
    std::fs::write(&file, bytes).unwrap();

    let top = pprof_tool(&["-top", "-sample_index=inuse_space"], &file);
    assert!(top.contains("leaky_service::leak_request_buffer"), "{top}");

    // Every executable mapping names its object and build-id.
    let raw = pprof_tool(&["-raw"], &file);
    let exe = bin("leaky-service");
    let id = build_id(&exe);
    assert!(
        raw.lines()
            .any(|l| l.contains(exe.to_str().unwrap()) && l.contains(&id)),
        "no mapping of {} with build-id {id}:\n{raw}",
        exe.display()
    );
    assert!(raw.contains("libc"), "libc's mapping: {raw}");

    // pprof symbolizes the addresses again from the binary itself (with
    // binutils), which only works when addresses and mappings are true.
    let forced = pprof_tool(&["-raw", "-symbolize=force"], &file);
    assert!(
        forced.contains("examples/leaky-service/src/main.rs"),
        "re-symbolized from the binary:\n{forced}"
    );
}

/// Builds the leaking Go service of `tests/go/leaky` into `dir`.
fn build_go_service(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("go/leaky/main.go");
    let out = dir.join("go-leaky");
    let mut cmd = go();
    cmd.args(["build", "-o"]).arg(&out).arg(&src);
    run(cmd);
    out
}

/// Drives the Go service's leak for `secs`, calling `each_second` once a
/// second (to push its profile, or not).
fn drive(svc: &Proc, secs: u64, mut each_second: impl FnMut()) {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut next = Instant::now();
    let mut n = 0u64;
    while Instant::now() < end {
        let route = if n.is_multiple_of(3) {
            "/work"
        } else {
            "/leak"
        };
        assert_eq!(get(&svc.url(route)).0, 200, "{route}");
        n += 1;
        if Instant::now() >= next {
            each_second();
            next += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_go_leak_found(store: &Path, instance: &str) {
    let v = leaks_json(store);
    let heap = finding(&v, "heap").unwrap_or_else(|| panic!("no heap finding: {v:#}"));
    assert_eq!(heap["instance"], instance, "{heap:#}");
    assert!(heap["slope_per_hour"].as_f64().unwrap() > 0.0, "{heap:#}");
    let (frames, app) = top_site(heap);
    assert!(
        frames[app].contains("main.leakSessionBuffers"),
        "the first frame outside the runtime: {frames:?}"
    );
}

#[test]
fn a_go_service_pushing_its_heap_profiles_is_found_leaking() {
    let dir = tempfile::tempdir().unwrap();
    let go_bin = build_go_service(dir.path());
    let store = dir.path().join("h.db");
    let an = analyzer(dir.path(), &store, "127.0.0.1:0", &[]);
    let svc = Proc::start(Command::new(go_bin), dir.path().join("go.log"));
    let push = an.url("/v1/ingest/pprof?service=go-leaky&instance=go-1");
    drive(&svc, 45, || {
        let profile = http()
            .get(&svc.url("/debug/pprof/heap"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        let resp = http().post(&push).send(&profile[..]).unwrap();
        assert_eq!(resp.status(), 200);
    });
    assert_go_leak_found(&store, "go-1");

    // A body that is not a profile is refused by name, and nothing is lost.
    let resp = http().post(&push).send(&b"not a profile"[..]).unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http()
        .post(&an.url("/v1/ingest/pprof?service=go-leaky"))
        .send(&b""[..])
        .unwrap();
    assert_eq!(resp.status(), 400, "the instance is required");
    assert_go_leak_found(&store, "go-1");
}

#[test]
fn a_go_service_scraped_by_the_analyzer_is_found_leaking() {
    let dir = tempfile::tempdir().unwrap();
    let go_bin = build_go_service(dir.path());
    let svc = Proc::start(Command::new(go_bin), dir.path().join("go.log"));
    let store = dir.path().join("h.db");
    let target = format!("go-leaky={}", svc.url("/debug/pprof/heap"));
    let _an = analyzer(
        dir.path(),
        &store,
        "127.0.0.1:0",
        &["--scrape", &target, "--scrape-interval", "1s"],
    );
    drive(&svc, 45, || {});
    assert_go_leak_found(&store, &svc.addr.to_string());
}
