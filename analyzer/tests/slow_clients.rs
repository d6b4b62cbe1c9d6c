//! Connection hygiene against a real `analyzer serve` at its default
//! settings, started as many systems start a service (a soft limit of
//! 1,024 open files): slow, idle and non-reading clients from one host
//! are closed on their deadlines, and an honest client on another address
//! keeps its answers within a second throughout.

use std::net::IpAddr;
use std::time::Duration;

use heaptide_testkit::hostile::{
    analyzer_at_1024, probe, quantile, raise_fd_limit, Attack, Behaviour,
};
use heaptide_testkit::*;

const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// One attack at a time: each opens thousands of connections, and the
/// honest client's deadline of a second is about the analyzer, not about
/// four attacks sharing two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// The value of an unlabelled (or the first labelled) sample of `name`
/// on `/metrics`.
fn metric(an: &Proc, name: &str) -> f64 {
    let (_, text) = an.get("/metrics");
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// Runs the honest client for `span` and holds every answer under 1 s.
fn honest_client_keeps_answers(an: &Proc, span: Duration) {
    let times = probe(an.addr, span, Duration::from_millis(100));
    let worst = quantile(&times, 1.0);
    assert!(
        worst < Duration::from_secs(1),
        "an honest request took {worst:?} (p50 {:?}); {} requests",
        quantile(&times, 0.5),
        times.len()
    );
}

/// The analyzer's soft open-file limit, from /proc.
fn soft_fd_limit(an: &Proc) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", an.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// 1,200 clients that send a header byte every 2 s, more than the limit
/// of 1,024 files the analyzer started with: it raised the limit, admits
/// them all, answers others, and closes each on the 15 s header deadline.
#[test]
fn slowloris_clients_are_closed_on_the_header_deadline() {
    let _turn = one_at_a_time();
    let hard = raise_fd_limit();
    assert!(
        hard >= 4096,
        "this test needs a hard open-file limit of 4096 or more, not {hard}"
    );
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer_at_1024(dir.path(), &[]);
    assert_eq!(
        soft_fd_limit(&an),
        hard,
        "serve raises its soft limit to the hard one"
    );
    let attack = Attack::start(Behaviour::Slowloris, ATTACKER, an.addr, 1200);
    let started = std::time::Instant::now();
    attack.wait_opened(1200, Duration::from_secs(30));
    // Counted while they are all still open: each closes 15 s after its
    // accept, and on a busy host the 1,200 connects alone can take some
    // seconds, so the count after the honest client's 10 s would measure
    // the host's pace, not what the analyzer admits.
    wait_for_or(
        "the analyzer to hold 1,000 of the connections open",
        Duration::from_secs(10),
        || format!("opened in {:?}", started.elapsed()),
        || {
            let n = metric(&an, "heaptide_http_connections_open");
            (n >= 1000.0).then_some(n)
        },
    );
    honest_client_keeps_answers(&an, Duration::from_secs(10));
    let closed = wait_for(
        "the slow connections to be closed",
        Duration::from_secs(40),
        || {
            let t = attack.tally();
            (t.closed_after.len() == t.opened).then_some(t)
        },
    );
    assert_eq!(closed.failed, 0, "every connection was admitted");
    // Each dripped a byte every 2 s, so none was idle; the header deadline
    // (15 s) closed it, not a read timeout.
    let early = closed
        .closed_after
        .iter()
        .filter(|d| d.as_secs() < 14)
        .count();
    assert_eq!(early, 0, "closed before the header deadline: {early}");
    assert!(metric(&an, "heaptide_http_connections_timed_out_total") >= 1200.0);
}

/// Clients that pipeline requests for the 10 KB overview page and never
/// read: each is closed once its writes stall for the write deadline.
/// Five, so that each gets its share of the address's paced requests
/// quickly enough to fill its buffers within the test.
#[test]
fn clients_that_never_read_are_closed_on_the_write_deadline() {
    let _turn = one_at_a_time();
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer_at_1024(dir.path(), &[]);
    let behaviour = Behaviour::NonReader {
        path: "/",
        requests: 2000,
    };
    let attack = Attack::start(behaviour, ATTACKER, an.addr, 5);
    attack.wait_opened(5, Duration::from_secs(30));
    honest_client_keeps_answers(&an, Duration::from_secs(8));
    let context = || {
        let (_, m) = an.get("/metrics");
        let conns: Vec<&str> = m
            .lines()
            .filter(|l| l.starts_with("heaptide_http_conn"))
            .collect();
        format!("{} closed; {conns:?}", attack.tally().closed_after.len())
    };
    let closed = wait_for_or(
        "the stalled connections to be closed",
        Duration::from_secs(60),
        context,
        || {
            let t = attack.tally();
            (t.closed_after.len() == t.opened).then_some(t)
        },
    );
    assert_eq!(closed.opened, 5);
    assert!(metric(&an, "heaptide_http_connections_timed_out_total") >= 5.0);
    assert_eq!(
        metric(&an, "heaptide_http_connections_open"),
        1.0,
        "only /metrics' own"
    );
}

/// 3,000 connections that send nothing: admitted (past the soft limit the
/// analyzer started with) and closed on the idle deadline.
#[test]
fn a_flood_of_idle_connections_is_closed_on_the_idle_deadline() {
    let _turn = one_at_a_time();
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer_at_1024(dir.path(), &[]);
    let attack = Attack::start(Behaviour::Idle, ATTACKER, an.addr, 3000);
    attack.wait_opened(3000, Duration::from_secs(30));
    honest_client_keeps_answers(&an, Duration::from_secs(8));
    let closed = wait_for(
        "the idle connections to be closed",
        Duration::from_secs(40),
        || {
            let t = attack.tally();
            (t.closed_after.len() == t.opened).then_some(t)
        },
    );
    assert_eq!(closed.failed, 0);
    assert!(closed.closed_after.iter().all(|d| d.as_secs() >= 14));
}

/// Past the per-address cap, connections from that address are closed at
/// once and counted, while another address is still served.
#[test]
fn connections_past_the_per_address_cap_are_refused_and_counted() {
    let _turn = one_at_a_time();
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer_at_1024(dir.path(), &["--max-connections-per-address", "100"]);
    let attack = Attack::start(Behaviour::Idle, ATTACKER, an.addr, 300);
    attack.wait_opened(300, Duration::from_secs(30));
    let refused = wait_for("200 refusals", Duration::from_secs(10), || {
        let t = attack.tally();
        (t.closed_after.len() >= 200).then_some(t)
    });
    assert!(
        refused
            .closed_after
            .iter()
            .take(200)
            .all(|d| *d < Duration::from_secs(2)),
        "refused connections are closed at once"
    );
    honest_client_keeps_answers(&an, Duration::from_secs(2));
    let (_, text) = an.get("/metrics");
    assert!(
        text.contains("heaptide_http_connections_refused_total{reason=\"per_address\"} 200"),
        "{text}"
    );
}
