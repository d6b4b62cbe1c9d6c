//! A fast leak pages fast, at default settings: the agent with nothing
//! set but its endpoint and instance, and `analyzer serve` with nothing set
//! but its webhook. Each test takes minutes of real time; `test.sh` runs
//! this binary beside the rest of the suite (every test here has
//! `at_default_settings` in its name, which the main run skips).

use std::process::Command;
use std::time::{Duration, Instant};

use heaptide_tests::receiver::{Answer, Receiver};
use heaptide_tests::*;

const SVC: &str = "leaky-service";

/// `analyzer serve` at its defaults, alerting to `hook`.
fn default_analyzer(dir: &std::path::Path, hook: &Receiver) -> Proc {
    analyzer(
        dir,
        &dir.join("h.db"),
        "127.0.0.1:0",
        &["--alert-webhook", &hook.url()],
    )
}

/// The leaky example with the agent at its defaults, under a soft fd
/// limit of `nofile`, as a container's would be.
fn default_leaky(dir: &std::path::Path, an: &Proc, instance: &str, nofile: u32) -> Proc {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("ulimit -n {nofile} && exec \"$0\"")])
        .arg(bin("leaky-service"))
        .env("HEAPTIDE_ENDPOINT", format!("http://{}", an.addr))
        .env("HEAPTIDE_INSTANCE", instance)
        .env("LEAKY_LISTEN", "127.0.0.1:0");
    for var in ["HEAPTIDE_INTERVAL", "HEAPTIDE_PROFILE_INTERVAL"] {
        cmd.env_remove(var);
    }
    Proc::start(cmd, dir.join(format!("leaky-{instance}.log")))
}

/// The first alert `hook` received that is firing for `resource` under
/// one of `names`.
fn page(hook: &Receiver, names: &[&str], resource: &str) -> Option<serde_json::Value> {
    hook.alerts().into_iter().find(|a| {
        a["status"] == "firing"
            && names.iter().any(|n| a["labels"]["alertname"] == *n)
            && a["labels"]["resource"] == resource
    })
}

/// An fd leak from the start that would reach a limit of 1,024 in about
/// five minutes pages before it does: the agent samples fast while the
/// process is young and while the resource runs out, the analyzer judges
/// the instance early on the agent's word, and a runway of minutes cuts
/// the rule's `for`.
#[test]
fn a_leak_with_minutes_of_runway_pages_before_exhaustion_at_default_settings() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Answer::Ok);
    let an = default_analyzer(dir.path(), &hook);
    let leaky = default_leaky(dir.path(), &an, "fast", 1024);
    let start = Instant::now();
    let mut leaked = 0u32;
    let paged = loop {
        // About 3.4 files a second: the limit is reached at about 290 s.
        let (status, body) = get(&leaky.url("/leak-fd"));
        assert_eq!(status, 200);
        assert!(
            !body.starts_with("error"),
            "the limit was reached after {leaked} files and {:?} with no page: {body}; got {:?}",
            start.elapsed(),
            hook.received()
        );
        leaked += 1;
        if let Some(a) = page(&hook, &["HeaptideLeakCritical", "HeaptideExhausted"], "fds") {
            break a;
        }
        assert!(start.elapsed() < Duration::from_secs(330), "no page");
        std::thread::sleep(Duration::from_millis(290));
    };
    let after = start.elapsed();
    eprintln!("paged after {after:?}, at {leaked} leaked files of 1024");
    assert_eq!(paged["labels"]["severity"], "critical", "{paged:#}");
    assert_eq!(paged["labels"]["instance"], "fast");
    let description = paged["annotations"]["description"].as_str().unwrap();
    assert!(description.contains("RLIMIT_NOFILE"), "{description}");
    // The early verdict says it was early.
    let leaks = an.get_json(&format!("/v1/leaks?service={SVC}"));
    let fds = leaks["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["instance"] == "fast" && f["resource"] == "fds")
        .cloned()
        .unwrap_or_else(|| panic!("no fds finding: {leaks:#}"));
    assert!(
        fds["time_to_exhaustion_seconds"].as_f64().unwrap() < 600.0,
        "{fds:#}"
    );
}

/// A process pinned at its fd limit (256) keeps being sampled and keeps
/// sending, and pages `HeaptideExhausted` at once, although its series is
/// too short for any growth verdict.
#[test]
fn a_process_at_its_fd_limit_pages_exhausted_at_default_settings() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Answer::Ok);
    let an = default_analyzer(dir.path(), &hook);
    let leaky = default_leaky(dir.path(), &an, "pinned", 256);
    wait_for("first sample", Duration::from_secs(30), || {
        latest(&an, SVC, "pinned", "fds")
    });
    assert_eq!(get(&leaky.url("/leak-fd-all")).0, 200);
    let start = Instant::now();
    let paged = wait_for("HeaptideExhausted", Duration::from_secs(90), || {
        page(&hook, &["HeaptideExhausted"], "fds")
    });
    eprintln!("paged {:?} after the limit was taken", start.elapsed());
    assert_eq!(paged["labels"]["severity"], "critical");
    assert!(
        paged["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("of 256")),
        "{paged:#}"
    );
    // Every resource is still sampled, and batches still arrive.
    let paged_ms = now_ms();
    for metric in ["fds", "process.rss", "threads", "tcp"] {
        wait_for(
            &format!("{metric} sampled after the page"),
            Duration::from_secs(40),
            || {
                let v = an.get_json(&format!(
                    "/v1/series?service={SVC}&instance=pinned&metric={metric}&since=10m"
                ));
                v["points"].as_array()?.last()?["ts_ms"]
                    .as_i64()
                    .filter(|t| *t > paged_ms + 1000)
            },
        );
    }
}

/// A warm-up that climbs 128 MiB in about a minute and then holds is not
/// paged, although the agent samples fast while the process is young:
/// the analyzer counts evidence at the configured pace, and the growth
/// was never urgent.
#[test]
fn a_warm_up_to_a_plateau_does_not_page_at_default_settings() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Answer::Ok);
    let an = default_analyzer(dir.path(), &hook);
    let leaky = default_leaky(dir.path(), &an, "warm", 1024);
    let start = Instant::now();
    // 128 KiB every 60 ms: the pool is full after about a minute, then
    // recycles. Five and a half minutes in all: past the 30 samples at the
    // configured 10 s that a standard verdict needs.
    while start.elapsed() < Duration::from_secs(330) {
        assert_eq!(get(&leaky.url("/warm?kb=128")).0, 200);
        std::thread::sleep(Duration::from_millis(60));
    }
    assert!(hook.alerts().is_empty(), "paged: {:?}", hook.received());
    let leaks = an.get_json(&format!("/v1/leaks?service={SVC}&fresh=true"));
    let alarms: Vec<_> = leaks["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["verdict"] == "leak" || f["verdict"] == "exhausted")
        .collect();
    assert!(alarms.is_empty(), "false positive: {alarms:#?}");
    let heap = latest(&an, SVC, "warm", "heap.allocated").unwrap();
    assert!(
        heap > 100.0 * 1024.0 * 1024.0,
        "the warm-up held {heap} bytes"
    );
}
