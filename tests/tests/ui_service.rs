//! The service as a whole, in headless Chromium: two instances of the
//! example, versions 1 and 2, stream to a real analyzer. The service page
//! lists both and filters by label; the merged flamegraph holds both
//! instances' stacks; version 2 against version 1 colours the stack that
//! grew.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use heaptide_tests::webdriver::Browser;
use heaptide_tests::*;

/// `routes` in turn on `leaky` every 8 ms (`{n}` counting up) until
/// `stop`, for at most five minutes.
fn drive(leaky: &Proc, routes: &[&str], stop: &AtomicBool) {
    let end = Instant::now() + Duration::from_secs(300);
    let mut n = 0;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        get(&leaky.url(&routes[n % routes.len()].replace("{n}", &(n % 1500).to_string())));
        n += 1;
        std::thread::sleep(Duration::from_millis(8));
    }
}

/// The bytes of the root frame of an inferno flamegraph.
fn total_bytes(svg: &str) -> u64 {
    let title = svg
        .split("<title>all (")
        .nth(1)
        .unwrap_or_else(|| panic!("no root frame in {}", &svg[..svg.len().min(400)]));
    title
        .split(' ')
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap()
}

#[test]
fn the_service_page_merges_filters_and_compares_versions() {
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("h.db"), "127.0.0.1:0", &[]);
    let endpoint = format!("http://{}", an.addr);
    let start = |instance, version| {
        leaky(
            dir.path(),
            &endpoint,
            instance,
            &[
                ("HEAPTIDE_PROFILE_INTERVAL", "1s"),
                ("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB"),
                ("HEAPTIDE_LABELS", version),
            ],
        )
    };
    // Version 2 is deployed after version 1, as the page orders them.
    let v1 = start("svc-1", "version=1");
    std::thread::sleep(Duration::from_secs(2));
    let v2 = start("svc-2", "version=2");
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Version 1 fills its bounded cache; version 2 leaks as well.
        scope.spawn(|| drive(&v1, &["/cache?key={n}", "/work"], &stop));
        scope.spawn(|| drive(&v2, &["/leak?kb=16", "/work"], &stop));
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_secs(30));
        merged_holds_both(&an);
        let b = Browser::start();
        service_page(&b, &an);
        version_diff(&b, &an);
        let errors = b.console_errors();
        assert!(errors.is_empty(), "console errors: {errors:?}");
    });
}

/// The merged live heap at one time is both instances' heaps added up.
fn merged_holds_both(an: &Proc) {
    // A moment already past: every instance's profile nearest it has
    // arrived, so no profile sent between the requests below is nearer.
    let at = now_ms() - 3_000;
    let svg = |q: &str| {
        let (status, body) =
            get(&an.url(&format!("/ui/flame.svg?service=leaky-service&at={at}{q}")));
        assert_eq!(status, 200, "{q}: {body}");
        body
    };
    let merged = svg("");
    let (one, two) = (svg("&instance=svc-1"), svg("&instance=svc-2"));
    assert_eq!(total_bytes(&merged), total_bytes(&one) + total_bytes(&two));
    assert!(merged.contains("fill_bounded_cache") && merged.contains("leak_request_buffer"));
    let only_v2 = svg("&label=version:2");
    assert_eq!(total_bytes(&only_v2), total_bytes(&two), "the label filter");
}

fn service_page(b: &Browser, an: &Proc) {
    b.goto(&an.url("/ui/service?service=leaky-service"));
    assert_eq!(b.count("table#services tr.instance"), 2);
    assert_eq!(
        b.count("svg.chart[data-chart=heap] polyline.series"),
        2,
        "heap per instance, on shared axes"
    );
    assert!(b.count("#sites tr") >= 2, "the growing sites are listed");
    assert_eq!(
        b.count("#range input[type=datetime-local]"),
        2,
        "the range picker"
    );
    b.screenshot(&shots().join("service.png"));
    b.click("a.label[href$='label=version%3A2']");
    let end = Instant::now() + Duration::from_secs(10);
    while b.count("table#services tr.instance") != 1 {
        assert!(Instant::now() < end, "the label filter did not apply");
        std::thread::sleep(Duration::from_millis(100));
    }
    b.goto(&an.url("/ui/flame?service=leaky-service&kind=live"));
    b.screenshot(&shots().join("service-flamegraph.png"));
}

/// One frame of an inferno SVG: its title, fill and horizontal extent.
struct Frame {
    title: String,
    fill: String,
    x: f64,
    width: f64,
}

fn frame(g: &str) -> Option<Frame> {
    let attr = |name: &str| -> Option<String> {
        Some(
            g.split(&format!(" {name}=\""))
                .nth(1)?
                .split('"')
                .next()?
                .to_owned(),
        )
    };
    let pct = |name: &str| attr(name)?.trim_end_matches('%').parse::<f64>().ok();
    Some(Frame {
        title: g
            .split("<title>")
            .nth(1)?
            .split("</title>")
            .next()?
            .to_owned(),
        fill: attr("fill")?,
        x: pct("x")?,
        width: pct("width")?,
    })
}

/// Version 2 against version 1, per instance: the leaking stack is red.
fn version_diff(b: &Browser, an: &Proc) {
    b.goto(&an.url("/ui/service?service=leaky-service"));
    let text = b.eval(
        "return document.getElementById('flame-compare').textContent;",
        serde_json::json!([]),
    );
    assert_eq!(
        text, "version 2 against 1",
        "the newest against the one before"
    );
    b.click("#flame-compare");
    let (status, svg) = get(
        &an.url("/ui/flame.svg?service=leaky-service&kind=compare&base=version:1&label=version:2")
    );
    assert_eq!(status, 200, "{svg}");
    // Inferno colours a frame by its own change: the allocations made
    // under the leaking function (its children) are the red ones.
    let frames: Vec<Frame> = svg.split("<g>").filter_map(frame).collect();
    let leak = frames
        .iter()
        // Marked `▶` as the application's frame nearest the allocation.
        .find(|f| {
            f.title
                .trim_start_matches("\u{25b6}\u{a0}")
                .starts_with("leaky_service::leak_request_buffer")
        })
        .unwrap_or_else(|| panic!("no leak_request_buffer frame"));
    let red_above = frames.iter().any(|f| {
        f.fill.starts_with("rgb(255,")
            && f.x >= leak.x - 1e-6
            && f.x + f.width <= leak.x + leak.width + 1e-6
            && f.title.contains("; +")
    });
    assert!(
        red_above,
        "the stack under leak_request_buffer is red as grown"
    );
    b.screenshot(&shots().join("version-diff.png"));
}
