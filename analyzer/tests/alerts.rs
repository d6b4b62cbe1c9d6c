//! Alerts end to end on real parts: an `analyzer serve` process fed over
//! HTTP, real webhook receivers on 127.0.0.1 (one healthy, one answering
//! 500, one too slow, one down), `/metrics` checked by `promtool`, and bad
//! alert configs refused by name.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use heaptide_testkit::receiver::{Answer, Receiver};
use heaptide_testkit::*;

/// A batch of the last `minutes` of one process's fds, one more a minute
/// (a leak that runs out of its 1024 within a day), or flat.
fn fds_batch(instance: &str, pid: u32, leaking: bool, minutes: i64) -> Vec<u8> {
    let now = now_ms();
    let start = now - minutes * 60_000;
    let agent = fixtures::agent("svc", instance, pid, start - 1_000);
    let mut batch = fixtures::batch(agent, 1, now);
    let mut ts = start;
    while ts < now {
        let fds = if leaking {
            20.0 + ((ts - start) / 60_000) as f64
        } else {
            20.0
        };
        batch.samples.push(fixtures::metrics(
            ts,
            &[("fds", fds), ("limit.nofile.soft", 1024.0)],
        ));
        ts += 10_000;
    }
    serde_json::to_vec(&batch).unwrap()
}

fn post(url: &str, body: &[u8]) -> u16 {
    match http()
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("serve.toml");
    std::fs::write(&p, body).unwrap();
    p
}

fn metrics_text(an: &Proc) -> String {
    let (status, text) = get(&an.url("/metrics"));
    assert_eq!(status, 200, "{text}");
    text
}

/// `promtool check metrics` on `text`, which must pass.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool, from Debian's prometheus package (test.sh installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `analyzer serve` judging every second, with alerts that fire and
/// resolve after a second, sending to `good` (with a token), `failing`,
/// `slow` (as Slack) and an address where nothing listens.
fn serve_with_webhooks(dir: &Path, good: &Receiver, failing: &Receiver, slow: &Receiver) -> Proc {
    let down = unused_fixed_addr();
    std::fs::write(dir.join("hook.token"), "s3cret\n").unwrap();
    let cfg = write_config(
        dir,
        &format!(
            r#"
[alerts.leak_critical]
within = "24h"
for = "1s"
resolve_after = "1s"
[alerts.not_reporting]
after = "1h"
[[alerts.webhook]]
url = "{}"
token_file = "{}"
[[alerts.webhook]]
url = "{}"
[[alerts.webhook]]
url = "{}"
kind = "slack"
"#,
            good.url(),
            dir.join("hook.token").display(),
            failing.url(),
            slow.url(),
        ),
    );
    analyzer(
        dir,
        &dir.join("h.db"),
        "127.0.0.1:0",
        &[
            "--evaluate-every",
            "1s",
            "--config",
            cfg.to_str().unwrap(),
            "--alert-webhook",
            &format!("http://{down}/hook"),
        ],
    )
}

#[test]
fn a_leak_fires_then_resolves_and_failing_receivers_change_nothing_for_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let good = Receiver::start(Answer::Ok);
    let failing = Receiver::start(Answer::Status(500));
    let slow = Receiver::start(Answer::Slow(Duration::from_secs(30)));
    let an = serve_with_webhooks(dir.path(), &good, &failing, &slow);
    let ingest = an.url(heaptide_wire::INGEST_PATH);
    assert_eq!(post(&ingest, &fds_batch("leaky", 1, true, 50)), 200);

    let firing = wait_for("a firing critical alert", Duration::from_secs(60), || {
        good.alerts()
            .into_iter()
            .find(|a| a["status"] == "firing" && a["labels"]["alertname"] == "HeaptideLeakCritical")
    });
    assert_eq!(firing["labels"]["severity"], "critical");
    assert_eq!(firing["labels"]["service"], "svc");
    assert_eq!(firing["labels"]["instance"], "leaky");
    assert_eq!(firing["labels"]["resource"], "fds");
    let description = firing["annotations"]["description"].as_str().unwrap();
    assert!(description.contains("fds/h"), "{description}");
    assert!(description.contains("runs out in"), "{description}");
    assert!(
        firing["generatorURL"]
            .as_str()
            .unwrap()
            .ends_with("/ui/instance?service=svc&instance=leaky"),
        "{firing}"
    );
    // While it fires: /metrics shows it, and names every metric the
    // Prometheus examples query.
    let live = metrics_text(&an);
    assert!(
        live.contains("heaptide_alerts{alertname=\"HeaptideLeakCritical\",alertstate=\"firing\",instance=\"leaky\",resource=\"fds\",service=\"svc\",severity=\"critical\"} 1"),
        "{live}"
    );
    promtool_check(&live);
    examples_query_only_exported_metrics(&live);
    let first = &good.received()[0];
    assert_eq!(first.body["version"], "4");
    assert_eq!(first.authorization.as_deref(), Some("Bearer s3cret"));

    // While the failing receivers retry, ingest answers as before.
    for i in 0..20 {
        let t = Instant::now();
        assert_eq!(
            post(&ingest, &fds_batch(&format!("flat-{i}"), 1, false, 50)),
            200
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "ingest waited on a webhook"
        );
    }

    // The process restarts without the leak: the alert resolves.
    assert_eq!(post(&ingest, &fds_batch("leaky", 2, false, 5)), 200);
    let resolved = wait_for("the resolved alert", Duration::from_secs(60), || {
        good.alerts().into_iter().find(|a| {
            a["status"] == "resolved" && a["labels"]["alertname"] == "HeaptideLeakCritical"
        })
    });
    assert_eq!(resolved["fingerprint"], firing["fingerprint"]);
    assert_ne!(resolved["endsAt"], "0001-01-01T00:00:00Z");

    failures_show_on_metrics(&an, &failing);
}

/// A leak that runs out within a day meets both leak rules: Alertmanager,
/// which can inhibit, gets both; Slack, which cannot, only the critical.
#[test]
fn a_webhook_that_cannot_inhibit_gets_only_the_highest_severity() {
    let dir = tempfile::tempdir().unwrap();
    let (am, slack) = (Receiver::start(Answer::Ok), Receiver::start(Answer::Ok));
    let rule = "for = \"1s\"\nresolve_after = \"1s\"";
    let cfg = write_config(
        dir.path(),
        &format!(
            "[alerts.leak_critical]\nwithin = \"24h\"\n{rule}\n\
             [alerts.leak_warning]\nwithin = \"7d\"\n{rule}\n\
             [[alerts.webhook]]\nurl = \"{}\"\n[[alerts.webhook]]\nurl = \"{}\"\nkind = \"slack\"\n",
            am.url(),
            slack.url()
        ),
    );
    let args = ["--evaluate-every", "1s", "--config", cfg.to_str().unwrap()];
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &args);
    let ingest = an.url(heaptide_wire::INGEST_PATH);
    assert_eq!(post(&ingest, &fds_batch("leaky", 1, true, 50)), 200);
    wait_for(
        "both leak alerts at Alertmanager",
        Duration::from_secs(60),
        || {
            let names: Vec<String> = am
                .alerts()
                .iter()
                .filter(|a| a["status"] == "firing")
                .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
                .collect();
            (names.iter().any(|n| n == "HeaptideLeakCritical")
                && names.iter().any(|n| n == "HeaptideLeakWarning"))
            .then_some(())
        },
    );
    let texts = || -> Vec<String> {
        slack
            .received()
            .iter()
            .filter_map(|r| r.body["text"].as_str().map(str::to_owned))
            .collect()
    };
    // Each receiver is sent to on its own: Slack's may land after
    // Alertmanager's.
    wait_for(
        "the critical alert at Slack",
        Duration::from_secs(30),
        || {
            texts()
                .iter()
                .any(|t| t.contains("HeaptideLeakCritical"))
                .then_some(())
        },
    );
    // Time for a warning sent in the same pass to arrive, if one were.
    std::thread::sleep(Duration::from_secs(2));
    let texts = texts();
    assert!(
        !texts.iter().any(|t| t.contains("HeaptideLeakWarning")),
        "{texts:?}"
    );
}

/// Every failure shows on /metrics: the 500s and the refused connections
/// after their retries, the slow receiver's timeouts as retries; the
/// healthy receiver's deliveries and the 22 batches ingested beside them.
fn failures_show_on_metrics(an: &Proc, failing: &Receiver) {
    let failed = |text: &str, webhook: &str, outcome: &str| -> f64 {
        let needle = format!("outcome=\"{outcome}\",webhook=\"{webhook}\"");
        text.lines()
            .find(|l| l.starts_with("heaptide_webhook_notifications_total") && l.contains(&needle))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let text = wait_for("failures on /metrics", Duration::from_secs(60), || {
        let t = metrics_text(an);
        (failed(&t, "1", "failed") >= 1.0
            && failed(&t, "3", "failed") >= 1.0
            && failed(&t, "2", "retried") >= 1.0)
            .then_some(t)
    });
    assert!(failed(&text, "0", "delivered") >= 2.0, "{text}");
    assert_eq!(failed(&text, "0", "failed"), 0.0, "{text}");
    assert!(
        failing.received().len() >= 4,
        "the 500 receiver was retried"
    );
    let batches = text
        .lines()
        .find_map(|l| l.strip_prefix("heaptide_ingest_batches_total "));
    assert_eq!(batches, Some("22"), "{text}");
    promtool_check(&text);
}

fn examples_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/prometheus")
}

/// Every `heaptide_*` metric the example rules and dashboard query is one
/// `/metrics` exports (histograms by their series' names).
fn examples_query_only_exported_metrics(live: &str) {
    for file in ["rules.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(examples_dir().join(file)).unwrap();
        let mut rest = text.as_str();
        let mut seen = 0;
        while let Some(i) = rest.find("heaptide_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            seen += 1;
            let exported = live.lines().any(|l| {
                !l.starts_with('#')
                    && l.starts_with(&name)
                    && l[name.len()..].starts_with(['{', ' '])
            });
            assert!(
                exported,
                "{file} queries {name}, which /metrics does not export"
            );
        }
        assert!(seen >= 5, "{file} queries heaptide's metrics");
    }
}

#[test]
fn the_prometheus_examples_pass_promtool() {
    let dir = examples_dir();
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "rules.yml"],
        &["test", "rules", "rules_test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool, from Debian's prometheus package (test.sh installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap())
            .unwrap();
    assert!(dashboard["panels"].as_array().unwrap().len() >= 8);
}

/// `analyzer serve --config` with `body` must exit 2 with a message
/// holding `names`.
fn refused(body: &str, extra: &[&str], names: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), body);
    let out = Command::new(bin("analyzer"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store"])
        .arg(dir.path().join("h.db"))
        .arg("--config")
        .arg(&cfg)
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{body}: {err}");
    assert!(
        err.contains(names),
        "{body}: {err:?} does not name {names:?}"
    );
}

#[test]
fn bad_alert_config_stops_serve_with_a_message_that_names_it() {
    refused("[alerts]\nrepeat = \"1h\"\n", &[], "repeat");
    refused("[alerts.pause]\nfor = \"soon\"\n", &[], "soon");
    refused(
        "[[alerts.webhook]]\nurl = \"ftp://example\"\n",
        &[],
        "alerts.webhook.url",
    );
    refused(
        "[[alerts.webhook]]\nurl = \"http://127.0.0.1:9/\"\ntoken_file = \"/nonexistent/token\"\n",
        &[],
        "/nonexistent/token",
    );
    refused(
        "[[alerts.webhook]]\nurl = \"http://127.0.0.1:9/\"\nkind = \"pager\"\n",
        &[],
        "pager",
    );
    refused("", &["--alert-webhook", "not a url"], "not a url");
}

/// A pass longer than its interval is an alert, not a silent lag. The
/// store stalls (its ClickHouse server stopped for 4 s, as a saturated
/// one would answer), so the pass then running takes longer than the 1 s
/// interval: `HeaptideEvaluationBehind` fires for the analyzer's shard,
/// and `/metrics` shows the pass's duration, the instances it judged and
/// the lag.
#[test]
fn a_pass_longer_than_its_interval_fires_evaluation_behind() {
    use heaptide_testkit::clickhouse::{database, ClickHouse};
    use nix::sys::signal::{kill, Signal};
    let dir = tempfile::tempdir().unwrap();
    let ch = ClickHouse::start();
    let good = Receiver::start(Answer::Ok);
    let an = analyzer(
        dir.path(),
        Path::new(&ch.url(&database("behind"))),
        "127.0.0.1:0",
        &["--evaluate-every", "1s", "--alert-webhook", &good.url()],
    );
    let ingest = an.url(heaptide_wire::INGEST_PATH);
    for i in 0..5 {
        assert_eq!(
            post(&ingest, &fds_batch(&format!("i-{i}"), 1, false, 50)),
            200
        );
    }
    let judged = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix("heaptide_evaluation_instances_judged_sum "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    wait_for(
        "a pass that judged all five",
        Duration::from_secs(60),
        || (judged(&metrics_text(&an)) >= 5.0).then_some(()),
    );
    assert!(metrics_text(&an).contains("heaptide_evaluation_behind 0"));
    let server = nix::unistd::Pid::from_raw(ch.server_pid().unwrap() as i32);
    kill(server, Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    kill(server, Signal::SIGCONT).unwrap();
    let context = || {
        let names: Vec<String> = good
            .alerts()
            .iter()
            .map(|a| format!("{} {}", a["labels"]["alertname"], a["status"]))
            .collect();
        format!(
            "received {names:?}\n/metrics:\n{}\nstderr:\n{}",
            metrics_text(&an),
            an.stderr()
        )
    };
    let behind = wait_for_or(
        "HeaptideEvaluationBehind",
        Duration::from_secs(60),
        context,
        || {
            good.alerts().into_iter().find(|a| {
                a["status"] == "firing" && a["labels"]["alertname"] == "HeaptideEvaluationBehind"
            })
        },
    );
    assert_eq!(behind["labels"]["service"], "heaptide-analyzer");
    assert_eq!(behind["labels"]["instance"], "shard 0/1");
    assert_eq!(behind["labels"]["resource"], "evaluation");
    let summary = behind["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains("every 1s"), "{summary}");
    let text = metrics_text(&an);
    let last: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("heaptide_evaluation_last_duration_seconds "))
        .and_then(|v| v.parse().ok())
        .expect("the last pass's duration");
    assert!(last > 0.0, "{last}");
    promtool_check(&text);
}
