//! The dashboards in a real headless Chromium, with real data from the
//! leaky example: charts and flamegraphs render, a click on a frame zooms,
//! and the console stays clean. Screenshots are kept in
//! `target/ui-screenshots/`.

use std::time::{Duration, Instant};

use heaptide_tests::webdriver::Browser;
use heaptide_tests::*;

#[test]
fn dashboards_and_flamegraphs_render_and_respond() {
    let dir = tempfile::tempdir().unwrap();
    // Judged every 2 s, and a leak alert fires after 2 s, so that the
    // pages have alerts to show within the test.
    let cfg = dir.path().join("serve.toml");
    std::fs::write(
        &cfg,
        "[alerts.leak_critical]\nwithin = \"24h\"\nfor = \"2s\"\n\
         [alerts.leak_warning]\nwithin = \"7d\"\nfor = \"2s\"\n",
    )
    .unwrap();
    let an = analyzer(
        dir.path(),
        &dir.path().join("h.db"),
        "127.0.0.1:0",
        &["--evaluate-every", "2s", "--config", cfg.to_str().unwrap()],
    );
    let leaky = leaky(
        dir.path(),
        &format!("http://{}", an.addr),
        "ui-1",
        &[
            ("HEAPTIDE_PROFILE_INTERVAL", "1s"),
            ("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB"),
        ],
    );
    // The service stays under load while the pages are looked at, as a
    // service in production would: a per-request leak that stopped with
    // its traffic would rightly read as a regime that stopped growing.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| drive(&leaky, &stop));
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_secs(45));
        let b = Browser::start();
        overview(&b, &an);
        instance_page(&b, &an);
        chart_interaction(&b, &an);
        flamegraphs(&b, &an);
        check_unknown_and_console(&b, &an);
    });
    drop(leaky);
}

/// An unknown instance says so, and the console stayed clean.
fn check_unknown_and_console(b: &Browser, an: &Proc) {
    b.goto(&an.url("/ui/instance?service=nobody&instance=x"));
    let text = b.eval("return document.body.innerText;", serde_json::json!([]));
    assert!(text.to_string().contains("no data for nobody/x"), "{text}");

    let errors: Vec<String> = b
        .console_errors()
        .into_iter()
        .filter(|e| !e.contains("nobody"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

/// Load on every route of the example until `stop`.
fn drive(leaky: &Proc, stop: &std::sync::atomic::AtomicBool) {
    // Bounded: at most five minutes, whatever happens to the checks.
    let end = Instant::now() + Duration::from_secs(300);
    let mut n = 0;
    while Instant::now() < end && !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let route = [
            "/leak?kb=16",
            "/work",
            "/leak-fd",
            &format!("/cache?key={n}"),
        ][n % 4]
            .to_owned();
        get(&leaky.url(&route));
        n += 1;
        std::thread::sleep(Duration::from_millis(8));
    }
}

/// The overview lists the instance as leaking, with sparklines.
fn overview(b: &Browser, an: &Proc) {
    b.goto(&an.url("/"));
    assert_eq!(b.count("table#services tr.instance"), 1);
    assert!(
        b.count("svg.sparkline polyline") >= 2,
        "sparklines of heap and fds"
    );
    let status = b.eval(
        "return document.querySelector('tr.instance').dataset.status;",
        serde_json::json!([]),
    );
    assert!(
        status == "leaking" || status == "exhausting",
        "the leaking instance shows as {status}"
    );
    let alerts = b.eval(
        "return Array.from(document.querySelectorAll('tr.instance span.alert.firing')).map(s => s.dataset.alert + ' ' + s.textContent);",
        serde_json::json!([]),
    );
    assert!(
        alerts.to_string().contains("HeaptideLeak"),
        "the firing leak alert shows with its start: {alerts}"
    );
    b.screenshot(&shots().join("overview.png"));
}

/// Every chart with units, the finding and its projection.
fn instance_page(b: &Browser, an: &Proc) {
    b.goto(&an.url("/ui/instance?service=leaky-service&instance=ui-1"));
    for chart in ["heap", "rss", "fds", "threads", "sockets", "pauses"] {
        assert_eq!(
            b.count(&format!("svg.chart[data-chart={chart}]")),
            1,
            "chart {chart}"
        );
    }
    assert!(b.count("svg.chart polyline.series") >= 8, "series drawn");
    assert_eq!(
        b.count("h1 a[href='/ui/service?service=leaky-service']"),
        1,
        "the title links to the service's page"
    );
    let y_labels = b.eval(
        "return Array.from(document.querySelectorAll('svg.chart[data-chart=heap] .y-axis text')).map(t => t.textContent);",
        serde_json::json!([]),
    );
    assert!(
        y_labels.to_string().contains("MiB"),
        "heap axis has units: {y_labels}"
    );
    assert!(
        b.count(".finding[data-resource=heap]") == 1,
        "the heap leak is listed"
    );
    assert!(
        b.count("svg.chart polyline.projection") >= 1,
        "a projected path is drawn"
    );
    assert!(
        b.count("#alerts span.alert.firing") >= 1,
        "its firing alerts"
    );
    assert!(
        b.count("#history tr[data-state=firing]") >= 1
            && b.count("#history tr[data-state=began]") >= 1,
        "its history: the leak that began and the alert that fired"
    );
    b.screenshot(&shots().join("instance.png"));
    b.eval(
        "document.querySelector('svg.chart[data-chart=pauses]').scrollIntoView();",
        serde_json::json!([]),
    );
    b.screenshot(&shots().join("instance-pauses.png"));
}

/// The page's URL query once it differs from `before`, within 10 s.
fn next_query(b: &Browser, before: &str) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let q = b.eval("return location.search;", serde_json::json!([]));
        let q = q.as_str().unwrap_or("").to_owned();
        if q != before && b.count("svg.chart[data-chart=heap]") == 1 {
            return q;
        }
        if Instant::now() >= end {
            let now = b.eval(
                "return location.href + ': ' + document.body.innerText.slice(0, 300);",
                serde_json::json!([]),
            );
            panic!("no chart after moving from {before}: {now}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn query_ms(q: &str, key: &str) -> i64 {
    q.trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {q}"))
}

fn heap_from(b: &Browser) -> i64 {
    let v = b.eval(
        "return +document.querySelector('svg.chart[data-chart=heap]').dataset.from;",
        serde_json::json!([]),
    );
    v.as_i64().unwrap_or(0)
}

/// Times read in local time; hovering shows values and a cursor on every
/// chart; dragging zooms into the URL; the date picker sets a range.
fn chart_interaction(b: &Browser, an: &Proc) {
    // The default window: the last hour narrowed to the data, so that a
    // drag across the middle of a chart selects data.
    b.goto(&an.url("/ui/instance?service=leaky-service&instance=ui-1"));
    let title = b.eval(
        "return document.querySelector('#history time').title;",
        serde_json::json!([]),
    );
    assert!(
        title.to_string().ends_with("(UTC)\""),
        "UTC on hover: {title}"
    );
    b.mouse("svg.chart[data-chart=heap]", &[(60, 0)], false);
    let tip = b.eval(
        "const t = document.getElementById('tooltip'); return t.hidden ? '' : t.textContent;",
        serde_json::json!([]),
    );
    assert!(
        tip.to_string().contains("allocated: "),
        "hover value: {tip}"
    );
    assert!(
        b.count("svg.chart line.cursor[visibility=visible]") >= 5,
        "one cursor across the charts"
    );
    b.screenshot(&shots().join("hover.png"));

    let before = b.eval("return location.search;", serde_json::json!([]));
    b.mouse("svg.chart[data-chart=heap]", &[(-200, 0), (100, 0)], true);
    let zoomed = next_query(b, before.as_str().unwrap_or(""));
    let (from, to) = (query_ms(&zoomed, "from"), query_ms(&zoomed, "to"));
    assert!(from < to && !zoomed.contains("since="), "{zoomed}");
    assert_eq!(heap_from(b), from, "redrawn over the dragged range");

    // The picker, in local time: whole minutes around the dragged range.
    let start = b.eval(
        "const f = document.querySelector('#range input[name=from]'); const t = document.querySelector('#range input[name=to]');\
         const pad = n => String(n).padStart(2, '0');\
         const v = ms => { const d = new Date(ms); return d.getFullYear()+'-'+pad(d.getMonth()+1)+'-'+pad(d.getDate())+'T'+pad(d.getHours())+':'+pad(d.getMinutes()); };\
         const start = Math.floor(arguments[0] / 60000) * 60000 - 60000;\
         f.value = v(start); t.value = v(Math.ceil(arguments[1] / 60000) * 60000 + 60000); return start;",
        serde_json::json!([from, to]),
    );
    b.click("#range button");
    let picked = next_query(b, &zoomed);
    assert_eq!(
        query_ms(&picked, "from"),
        start.as_i64().unwrap(),
        "{picked}"
    );
    assert_eq!(heap_from(b), start.as_i64().unwrap());
}

/// The live and growth flamegraphs render, and a click zooms.
fn flamegraphs(b: &Browser, an: &Proc) {
    // The live heap flamegraph, opened as its own document so its script runs.
    let at = heaptide_tests::now_ms();
    b.goto(&an.url(&format!(
        "/ui/flame.svg?service=leaky-service&instance=ui-1&at={at}"
    )));
    assert!(b.count("#frames > g") > 5, "flamegraph frames rendered");
    assert!(b.count("#unzoom.hide") == 1);
    // Click the frame of the leaking function: the graph zooms to it.
    let title = b.eval(
        "var g = Array.from(document.querySelectorAll('#frames > g')).find(g => g.querySelector('title').textContent.includes('leak_request_buffer')); \
         if (!g) return null; g.id = 'target-frame'; return g.querySelector('title').textContent;",
        serde_json::json!([]),
    );
    assert!(title.is_string(), "no frame for leak_request_buffer");
    b.click("#target-frame rect");
    assert_eq!(
        b.count("#unzoom.hide"),
        0,
        "clicking a frame zooms (the reset button appears)"
    );
    let width = b.eval(
        "return document.querySelector('#target-frame rect').getAttribute('width');",
        serde_json::json!([]),
    );
    assert_eq!(width, "100.0000%", "the clicked frame fills the width");
    b.screenshot(&shots().join("flamegraph.png"));
    readable_leak_stack(b, an, at);

    b.goto(&an.url(&format!(
        "/ui/flame.svg?service=leaky-service&instance=ui-1&kind=growth&from={}&to={at}",
        at - 40_000
    )));
    assert!(
        b.count("#frames > g") > 5,
        "growth flamegraph frames rendered"
    );
    b.screenshot(&shots().join("growth.png"));

    // Memory the leak has held for over ten seconds, from the ages the
    // agent tracks: the leaking function is in it.
    b.goto(&an.url(&format!(
        "/ui/flame.svg?service=leaky-service&instance=ui-1&kind=old&older=10&at={at}"
    )));
    let old = b.eval(
        "return Array.from(document.querySelectorAll('#frames > g title')).some(t => t.textContent.includes('leak_request_buffer'));",
        serde_json::json!([]),
    );
    assert_eq!(old, true, "the leak's old memory is drawn");
    b.screenshot(&shots().join("old-memory.png"));

    b.goto(&an.url("/ui/flame?service=leaky-service&instance=ui-1&kind=live"));
    assert_eq!(b.count("object#flamegraph"), 1);
    assert!(
        b.count("a[href*='format=pprof']") >= 1,
        "pprof download link"
    );
}

/// Frames from the root to the top of the leak's tower, in the flamegraph
/// at `path`: its levels are drawn a fixed height apart.
fn leak_stack_depth(b: &Browser, an: &Proc, path: &str) -> u64 {
    b.goto(&an.url(path));
    let depth = b.eval(
        "var rects = Array.from(document.querySelectorAll('#frames > g'));\
         var g = rects.find(g => g.querySelector('title').textContent.includes('leak_request_buffer'));\
         if (!g) return null;\
         var r = g.querySelector('rect');\
         var x0 = parseFloat(r.getAttribute('x')), x1 = x0 + parseFloat(r.getAttribute('width'));\
         var ys = rects.map(h => h.querySelector('rect')).filter(h => { var x = parseFloat(h.getAttribute('x')); return x >= x0 - 1e-6 && x < x1; }).map(h => parseFloat(h.getAttribute('y')));\
         var all = rects.map(h => parseFloat(h.querySelector('rect').getAttribute('y')));\
         var step = parseFloat(r.getAttribute('height')) + 1;\
         return Math.round((Math.max.apply(null, all) - Math.min.apply(null, ys)) / step) + 1;",
        serde_json::json!([]),
    );
    depth
        .as_u64()
        .unwrap_or_else(|| panic!("no leak frame in {path}: {depth}"))
}

/// By default the leak's stack reads in under 15 frames, the framework's
/// runs folded and the application's frame nearest the allocation marked;
/// `frames=all` shows every frame.
fn readable_leak_stack(b: &Browser, an: &Proc, at: i64) {
    let path = format!("/ui/flame.svg?service=leaky-service&instance=ui-1&at={at}");
    let folded = leak_stack_depth(b, an, &path);
    let marked = b.eval(
        "return Array.from(document.querySelectorAll('#frames > g title')).some(t => t.textContent.startsWith('\\u25b6') && t.textContent.includes('leak_request_buffer'));",
        serde_json::json!([]),
    );
    // The leak's tower, root first, for the messages.
    let titles = b.eval("var rects = Array.from(document.querySelectorAll('#frames > g')); var g = rects.find(g => g.querySelector('title').textContent.includes('leak_request_buffer')); var r = g.querySelector('rect'); var x0 = parseFloat(r.getAttribute('x')); return rects.filter(h => { var q = h.querySelector('rect'); var x = parseFloat(q.getAttribute('x')); var w = parseFloat(q.getAttribute('width')); return x <= x0 + 1e-6 && x + w > x0; }).sort((a, b) => parseFloat(b.querySelector('rect').getAttribute('y')) - parseFloat(a.querySelector('rect').getAttribute('y'))).map(h => h.querySelector('title').textContent.split(' (')[0]);", serde_json::json!([]));
    assert_eq!(
        marked, true,
        "the leaking function is marked as the application's frame: {titles} depth {folded}"
    );
    let all = leak_stack_depth(b, an, &format!("{path}&frames=all"));
    println!("the leak's stack: {folded} frames folded, {all} in all: {titles}");
    assert!(
        folded < 15,
        "the leak's stack takes {folded} frames folded ({all} in all)"
    );
    assert!(
        all > folded,
        "frames=all shows every frame: {all} against {folded}"
    );
}
