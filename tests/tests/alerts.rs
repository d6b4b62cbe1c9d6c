//! The page before the outage: the real leaky example streams to a real
//! `analyzer serve`, whose alert reaches a real webhook receiver on
//! 127.0.0.1 naming the service, instance, resource and leaking function;
//! restarted without the leak, the receiver hears it resolve.

use std::time::{Duration, Instant};

use heaptide_tests::receiver::{Answer, Receiver};
use heaptide_tests::*;

/// Requests `route` on `leaky` every 8 ms until `done` returns `Some`, for
/// at most `limit`.
fn load_until<T>(
    leaky: &Proc,
    route: &str,
    limit: Duration,
    mut done: impl FnMut() -> Option<T>,
) -> Option<T> {
    let end = Instant::now() + limit;
    let mut n = 0;
    while Instant::now() < end {
        assert_eq!(get(&leaky.url(route)).0, 200, "{route}");
        n += 1;
        if n % 50 == 0 {
            if let Some(t) = done() {
                return Some(t);
            }
        }
        std::thread::sleep(Duration::from_millis(8));
    }
    None
}

fn alert(r: &Receiver, status: &str) -> Option<serde_json::Value> {
    r.alerts().into_iter().find(|a| {
        a["status"] == status
            && a["labels"]["alertname"] == "HeaptideLeakCritical"
            && a["labels"]["resource"] == "heap"
    })
}

#[test]
fn a_heap_leak_pages_before_exhaustion_and_resolves_after_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let hook = Receiver::start(Answer::Ok);
    let cfg = dir.path().join("serve.toml");
    std::fs::write(
        &cfg,
        "[alerts.leak_critical]\nwithin = \"24h\"\nfor = \"2s\"\nresolve_after = \"2s\"\n\
         [alerts.not_reporting]\nafter = \"1h\"\n",
    )
    .unwrap();
    let an = analyzer(
        dir.path(),
        &dir.path().join("h.db"),
        "127.0.0.1:0",
        &[
            "--evaluate-every",
            "1s",
            "--config",
            cfg.to_str().unwrap(),
            "--alert-webhook",
            &hook.url(),
        ],
    );
    let endpoint = format!("http://{}", an.addr);
    let env = [
        ("HEAPTIDE_PROFILE_INTERVAL", "1s"),
        ("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB"),
    ];
    let leaky = leaky(dir.path(), &endpoint, "web-1", &env);
    let firing = load_until(&leaky, "/leak?kb=16", Duration::from_secs(150), || {
        alert(&hook, "firing")
    })
    .unwrap_or_else(|| panic!("no firing alert; got {:?}", hook.received()));
    assert_eq!(firing["labels"]["service"], "leaky-service");
    assert_eq!(firing["labels"]["instance"], "web-1");
    assert_eq!(firing["labels"]["severity"], "critical");
    assert!(
        firing["annotations"]["site"]
            .as_str()
            .is_some_and(|s| s.contains("leak_request_buffer")),
        "the leaking function: {firing:#}"
    );
    let description = firing["annotations"]["description"].as_str().unwrap();
    assert!(description.contains("leak_request_buffer"), "{description}");
    assert!(description.contains("runs out in"), "{description}");
    drop(leaky);

    // The fixed build: the same instance, without the leak.
    let fixed = heaptide_tests::leaky(dir.path(), &endpoint, "web-1", &env);
    let resolved = load_until(&fixed, "/work", Duration::from_secs(90), || {
        alert(&hook, "resolved")
    })
    .unwrap_or_else(|| panic!("no resolved alert; got {:?}", hook.received()));
    assert_eq!(resolved["fingerprint"], firing["fingerprint"]);
}
