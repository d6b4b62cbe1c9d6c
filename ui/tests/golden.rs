//! Golden files for the SVG the UI draws, as inferno keeps them: a change
//! in the output fails here until reviewed and blessed with
//! `HEAPTIDE_BLESS=1 cargo test -p heaptide-ui --test golden`.

use heaptide_ui::{Chart, Series, Unit};

fn golden(name: &str, actual: &str) {
    heaptide_testkit::golden::assert_golden(env!("CARGO_MANIFEST_DIR"), name, actual);
}

const FOLDED: &str =
    "main;serve;handle;leaky_service::leak_request_buffer;alloc::alloc::alloc 13107200
main;serve;handle;leaky_service::fill_bounded_cache;alloc::alloc::alloc 6291456
main;serve;accept;tokio::net::TcpListener::accept 65536
";

#[test]
fn live_heap_flamegraph() {
    let svg =
        heaptide_ui::flame::flame_svg(FOLDED, "leaky-service/web-1", 1_800_000_000_000, false)
            .unwrap();
    assert!(svg.contains("leak_request_buffer"));
    golden("flame.svg", &svg);
}

#[test]
fn growth_flamegraph() {
    let before = "main;serve;handle;leaky_service::leak_request_buffer 1000\nmain;serve;handle;leaky_service::fill_bounded_cache 5000\n";
    let after = "main;serve;handle;leaky_service::leak_request_buffer 9000\nmain;serve;handle;leaky_service::fill_bounded_cache 5000\n";
    let svg = heaptide_ui::flame::differential_svg(
        before,
        after,
        "growth",
        1_800_000_000_000,
        1_800_000_600_000,
        false,
    )
    .unwrap();
    golden("growth.svg", &svg);
}

#[test]
fn chart_with_limit_restart_and_projection() {
    let t0 = 1_800_000_000_000i64;
    let points: Vec<(i64, f64)> = (0..120)
        .map(|i| (t0 + i * 30_000, 100.0 * 1048576.0 + i as f64 * 1048576.0))
        .collect();
    let chart = Chart {
        id: "rss".into(),
        title: "resident set size".into(),
        unit: Unit::Bytes,
        series: vec![Series {
            name: "rss".into(),
            points,
        }],
        limit: Some(("limit (cgroup memory.max)".into(), 400.0 * 1048576.0)),
        projection: Some(vec![
            (t0 + 3_600_000, 220.0 * 1048576.0),
            (t0 + 4_500_000, 280.0 * 1048576.0),
        ]),
        events: vec![],
    };
    let mark = |at_ms, kind, label: &str| heaptide_ui::Mark {
        at_ms,
        kind,
        label: label.into(),
    };
    let marks = [
        mark(t0 + 1_800_000, heaptide_ui::MarkKind::Restart, "restart"),
        mark(
            t0 + 2_400_000,
            heaptide_ui::MarkKind::Deploy,
            "deploy 1.4.2",
        ),
        mark(
            t0 + 3_000_000,
            heaptide_ui::MarkKind::Alert,
            "HeaptideLeakCritical fired",
        ),
    ];
    let svg = heaptide_ui::svg::chart(&chart, t0, t0 + 4_500_000, &marks);
    assert!(
        svg.contains("class=\"restart\"")
            && svg.contains("class=\"deploy\"")
            && svg.contains("class=\"alert-mark\"")
            && svg.contains("class=\"limit\"")
            && svg.contains("class=\"projection\"")
    );
    assert!(svg.contains("MiB"), "axis labels carry units");
    golden("chart.svg", &svg);
}
