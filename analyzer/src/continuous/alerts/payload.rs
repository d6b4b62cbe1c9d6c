//! The bodies webhooks receive: Alertmanager's webhook payload (version
//! 4), whose alerts Alertmanager's own API also accepts, and Slack's.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use super::state::{Alert, State};

/// Alertmanager's "not yet ended" time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// An alert's labels, as Alertmanager routes on them.
pub fn labels(a: &Alert) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("alertname", a.key.alertname.clone()),
        ("severity", a.severity.clone()),
        ("service", a.key.service.clone()),
        ("instance", a.key.instance.clone()),
        ("resource", a.key.resource.clone()),
    ])
}

/// Alertmanager's fingerprint: FNV-1a over the sorted labels, each name
/// and value followed by a 0xff separator, as its `model.LabelSet` does.
pub fn fingerprint(a: &Alert) -> String {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    for (k, v) in labels(a) {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    format!("{:016x}", h.finish())
}

/// The page that shows the alert's instance.
pub fn generator_url(external_url: &str, a: &Alert) -> String {
    format!(
        "{}{}",
        external_url.trim_end_matches('/'),
        heaptide_ui::pages::instance_path(&a.key.service, &a.key.instance)
    )
}

fn status(a: &Alert) -> &'static str {
    if a.state == State::Resolved {
        "resolved"
    } else {
        "firing"
    }
}

fn alert_json(external_url: &str, a: &Alert) -> Value {
    let mut annotations = BTreeMap::from([
        ("summary", a.summary.clone()),
        ("description", a.description.clone()),
    ]);
    if let Some(site) = &a.site {
        annotations.insert("site", site.clone());
    }
    json!({
        "status": status(a),
        "labels": labels(a),
        "annotations": annotations,
        "startsAt": rfc3339(a.starts_at_ms.unwrap_or(a.active_since_ms)),
        "endsAt": a.ends_at_ms.map_or(ZERO_TIME.to_owned(), rfc3339),
        "generatorURL": generator_url(external_url, a),
        "fingerprint": fingerprint(a),
    })
}

/// The labels every alert in `alerts` shares.
fn common_labels(alerts: &[Alert]) -> BTreeMap<&'static str, String> {
    let mut common = alerts.first().map(labels).unwrap_or_default();
    for a in alerts.iter().skip(1) {
        let l = labels(a);
        common.retain(|k, v| l.get(k) == Some(v));
    }
    common
}

/// One notification of `alerts`, all of one service, grouped by service as
/// an Alertmanager route with `group_by: [service]` would send them.
pub fn alertmanager(external_url: &str, alerts: &[Alert]) -> Value {
    let firing = alerts.iter().any(|a| a.state != State::Resolved);
    let service = alerts.first().map_or("", |a| a.key.service.as_str());
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{service={service:?}}}"),
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": "heaptide",
        "groupLabels": { "service": service },
        "commonLabels": common_labels(alerts),
        "commonAnnotations": {},
        "externalURL": external_url,
        "alerts": alerts.iter().map(|a| alert_json(external_url, a)).collect::<Vec<_>>(),
    })
}

/// Slack's three control characters, escaped as its message format asks.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming webhook's message: one line per alert, linking its
/// instance page.
pub fn slack(external_url: &str, alerts: &[Alert]) -> Value {
    let lines: Vec<String> = alerts
        .iter()
        .map(|a| {
            format!(
                "*[{}] {}* ({}) <{}|{}/{}> {}: {}\n{}",
                status(a).to_uppercase(),
                slack_escape(&a.key.alertname),
                slack_escape(&a.severity),
                generator_url(external_url, a),
                slack_escape(&a.key.service),
                slack_escape(&a.key.instance),
                slack_escape(&a.key.resource),
                slack_escape(&a.summary),
                slack_escape(&a.description)
            )
        })
        .collect();
    json!({ "text": lines.join("\n") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::continuous::alerts::state::AlertKey;

    fn alert(state: State) -> Alert {
        Alert {
            key: AlertKey {
                alertname: "HeaptideLeakCritical".into(),
                service: "api".into(),
                instance: "i 1".into(),
                resource: "heap".into(),
            },
            severity: "critical".into(),
            state,
            active_since_ms: 1_000,
            starts_at_ms: Some(61_000),
            ends_at_ms: (state == State::Resolved).then_some(120_000),
            clear_since_ms: None,
            summary: "sum".into(),
            description: "desc".into(),
            site: Some("leak_fn".into()),
            notified_ms: None,
            outranked: false,
        }
    }

    #[test]
    fn alertmanager_v4_shape() {
        let v = alertmanager("http://h:1/", &[alert(State::Firing)]);
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        let a = &v["alerts"][0];
        assert_eq!(a["labels"]["alertname"], "HeaptideLeakCritical");
        assert_eq!(a["labels"]["instance"], "i 1");
        assert_eq!(a["startsAt"], "1970-01-01T00:01:01.000Z");
        assert_eq!(a["endsAt"], ZERO_TIME);
        assert_eq!(
            a["generatorURL"],
            "http://h:1/ui/instance?service=api&instance=i%201"
        );
        assert_eq!(a["annotations"]["site"], "leak_fn");
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
        let r = alertmanager("http://h:1", &[alert(State::Resolved)]);
        assert_eq!(r["status"], "resolved");
        assert_eq!(r["alerts"][0]["endsAt"], "1970-01-01T00:02:00.000Z");
        assert_eq!(r["alerts"][0]["fingerprint"], a["fingerprint"]);
    }

    #[test]
    fn slack_names_the_alert_and_links_the_page() {
        let v = slack("http://h:1", &[alert(State::Firing)]);
        let t = v["text"].as_str().unwrap();
        assert!(t.starts_with("*[FIRING] HeaptideLeakCritical*"), "{t}");
        assert!(t.contains("<http://h:1/ui/instance?service=api&instance=i%201|api/i 1>"));
    }
}
