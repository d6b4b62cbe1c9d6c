//! How long `leaks` takes over a fleet's day, and the overview page.
//!
//! `cargo run --release -p heaptide-tests --bin leaks_load [-- --instances 100,1000 --hours 24 --clickhouse | --both] [--sqlite-dir DIR [--reuse [--top-up]]] [--baseline OLD_ANALYZER [--baseline-runs 1] [--baseline-same-schema]]`
//!
//! Writes, for each fleet size, a real SQLite store (or, with
//! `--clickhouse`, a database on a ClickHouse server this run starts with
//! a private data path, or with `--clickhouse-url clickhouse://HOST:PORT`
//! on a server already running) with that many instances
//! and `--hours` of 10 s samples of every metric the engine reads (one
//! instance in ten leaks heap, one in twenty fds), then times, side by side
//! in one run: the engine in-process over the whole fleet (what
//! `/v1/leaks?fresh=true` does), `analyzer leaks --fresh` as a user runs
//! it, one evaluation pass (findings, then the alert rules), its share of
//! a core at the default one-minute interval, `analyzer leaks` reading the
//! kept findings, and the overview page's view model. `--both` runs each
//! fleet size on SQLite and then on ClickHouse; `--baseline` also times
//! `leaks --fresh` of an older `analyzer` binary on the same stores,
//! marked with the schema version before rollups, which it reads
//! unchanged (with `--baseline-same-schema`, a build of this schema, timed
//! both before and after this one). With `--sqlite-dir`, each SQLite
//! fleet is written to `DIR/fleet_N.db` and kept, to be timed again by
//! another build: writing 10,000 instances takes over an hour. With
//! `--reuse`, a fleet already there (that file, or the ClickHouse
//! database) is not written again but timed as of its last sample, its
//! kept findings forgotten first so that the pass judges every instance;
//! with `--reuse --top-up`, its samples are first written on to now.

use std::time::{Duration, Instant};

use heaptide_analyzer::detect::{analyze, LeakVerdict, Options};
use heaptide_analyzer::select::Selector;
use heaptide_analyzer::store::Store;
use heaptide_testkit::{bin, now_ms};
use heaptide_tests::cpu_seconds;

mod baseline;
mod fleet;

use baseline::{baseline_cell, downgrade, Baseline};
use fleet::{open_store, reused, write_fleet, MIB};

fn arg(name: &str) -> Option<String> {
    heaptide_tests::flag_value(name)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    (median(times), last.expect("at least one run"))
}

/// Where each fleet's store lives: a SQLite file, or a database on a
/// ClickHouse server (this run's own, or one already running).
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sqlite,
    ClickHouse,
}

fn main() {
    let sizes: Vec<usize> = arg("--instances")
        .unwrap_or_else(|| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let hours: i64 = arg("--hours").and_then(|h| h.parse().ok()).unwrap_or(24);
    let external = arg("--clickhouse-url");
    let both = std::env::args().any(|a| a == "--both");
    let kinds = if both {
        vec![Kind::Sqlite, Kind::ClickHouse]
    } else if std::env::args().any(|a| a == "--clickhouse") || external.is_some() {
        vec![Kind::ClickHouse]
    } else {
        vec![Kind::Sqlite]
    };
    let baseline = Baseline::from_args();
    let clickhouse = (kinds.contains(&Kind::ClickHouse) && external.is_none())
        .then(heaptide_testkit::clickhouse::ClickHouse::start);
    println!("| store | instances | write | engine in-process | `analyzer leaks --fresh` | the same, baseline binary | one evaluation pass (findings + alerts) | its CPU time, every 1m, as a share of one core | `analyzer leaks` (kept) | overview view model (kept) | leaks found |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut pages = Vec::new();
    for kind in kinds {
        for &n in &sizes {
            let dir = tempfile::tempdir().unwrap();
            let server = match kind {
                Kind::Sqlite => None,
                Kind::ClickHouse => Some(match (&clickhouse, &external) {
                    (Some(ch), _) => ch.url(&format!("fleet_{n}")),
                    (None, Some(u)) => format!("{u}/fleet_{n}"),
                    (None, None) => unreachable!("a server was started"),
                }),
            };
            let file = match arg("--sqlite-dir") {
                Some(kept) => std::path::Path::new(&kept).join(format!("fleet_{n}.db")),
                None => dir.path().join("fleet.db"),
            };
            let (store, location) = open_store(server, &file);
            // A baseline of this schema is timed before this build too,
            // right after the write, since a store that was just written
            // runs faster later, as ClickHouse's merges end.
            let mut before = None;
            let row = fleet_row(&*store, &location, n, hours, || {
                before = baseline
                    .as_ref()
                    .filter(|b| b.same_schema)
                    .map(|b| b.time(&location));
            });
            let after = baseline.as_ref().map(|b| {
                if !b.same_schema {
                    downgrade(&location, clickhouse.as_ref());
                }
                b.time(&location)
            });
            let name = if kind == Kind::Sqlite {
                "SQLite"
            } else {
                "ClickHouse"
            };
            let base = baseline_cell(before, after);
            println!("| {name} | {n} | {} | {base} | {} |", row.0, row.1);
            pages.push((name, n, row.2));
            if kind == Kind::Sqlite {
                let _ = store_size(std::path::Path::new(&location));
            }
        }
    }
    println!("\n| store | instances | overview page | service page, 1 h | service page, 24 h | instance page, 24 h | merged flamegraph |");
    println!("|---|---|---|---|---|---|---|");
    for (name, n, t) in pages {
        let ms = t.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0));
        println!(
            "| {name} | {n} | {} | {} | {} | {} | {} |",
            ms[0], ms[1], ms[2], ms[3], ms[4]
        );
    }
}

/// Writes one fleet and times everything over it: the table row's
/// columns before and after the baseline's, and the pages.
fn fleet_row(
    store: &dyn Store,
    location: &str,
    n: usize,
    hours: i64,
    written_then: impl FnOnce(),
) -> (String, String, [Duration; 5]) {
    let path = std::path::Path::new(location);
    let written = Instant::now();
    let kept = reused(store, location, n);
    let now = match kept {
        Some(last) => last,
        None => {
            let now = now_ms();
            let start = now - hours * 3_600_000;
            write_fleet(store, start, &vec![start; n], now);
            now
        }
    };
    let write = written.elapsed();
    // As `serve`'s first pass does: the day's quarter hours settled once
    // (on ClickHouse; nothing on SQLite).
    let settled = Instant::now();
    store.settle(now_ms()).unwrap();
    let settle = settled.elapsed();
    written_then();
    let sel = Selector::all(now - 24 * 3_600_000, now);
    let (engine, analysis) = time(3, || analyze(store, &sel, &Options::default()).unwrap());
    let found: Vec<String> = analysis
        .findings
        .iter()
        .filter(|f| f.verdict == LeakVerdict::Leak)
        .map(|f| format!("{} {}", f.instance, f.resource.name()))
        .collect();
    eprintln!("leaks found: {found:?}");
    let leaks = found.len();
    let (cli, found_cli) = time(3, || leaks_cli(path, &["--fresh"]));
    eprintln!("this build's leaks found: {found_cli:?}");
    // The overview reads the findings continuous evaluation keeps: one
    // pass first, as `serve` runs at start.
    let (evaluated, cpu0) = (Instant::now(), cpu_seconds(std::process::id()));
    // At the clock's time, as `serve` runs it, so that `leaks` then reads
    // what it kept (a fleet kept from before is judged as it stands).
    heaptide_analyzer::continuous::evaluate(store, now_ms()).unwrap();
    let rules = heaptide_analyzer::continuous::alerts::AlertRules::default();
    heaptide_analyzer::continuous::alerts::advance(store, &rules, now_ms()).unwrap();
    let pass = evaluated.elapsed();
    let pass_cpu = cpu_seconds(std::process::id()) - cpu0;
    let (kept_cli, _) = time(3, || leaks_cli(path, &[]));
    let (overview, rows) = time(3, || {
        heaptide_analyzer::read::views::overview(store).unwrap()
    });
    assert_eq!(rows.len(), n);
    (
        format!(
            "{}, settled in {:.2} s | {:.2} s | {:.2} s",
            kept.map_or(format!("{:.1} s", write.as_secs_f64()), |_| "kept".into()),
            settle.as_secs_f64(),
            engine.as_secs_f64(),
            cli.as_secs_f64()
        ),
        format!(
            "{:.2} s | {:.0}% | {:.3} s | {:.3} s | {leaks}",
            pass.as_secs_f64(),
            100.0 * pass_cpu / 60.0,
            kept_cli.as_secs_f64(),
            overview.as_secs_f64()
        ),
        page_times(store, now),
    )
}

/// Each page, its view model built from the store and drawn to HTML,
/// median of three: the overview, the service page over its default hour
/// and over a day, one instance's page over a day, and the live-heap
/// flamegraph of every instance merged.
fn page_times(store: &dyn Store, now: i64) -> [Duration; 5] {
    use heaptide_analyzer::read::{service_page, views};
    use heaptide_ui::pages;
    let (overview, _) = time(3, || {
        let rows = views::overview(store).unwrap();
        pages::overview(&rows, now, 0)
    });
    let service = |hours: i64| {
        let sel = Selector {
            service: Some("fleet".into()),
            ..Selector::all(now - hours * 3_600_000, now)
        };
        time(3, || {
            let v = service_page::service(store, &sel, None).unwrap().unwrap();
            heaptide_ui::service::service(&v, now)
        })
        .0
    };
    let (hour, day) = (service(1), service(24));
    let sel = Selector::all(now - 24 * 3_600_000, now).for_instance("fleet", "fleet-3");
    let (instance, _) = time(3, || {
        let v = views::instance(store, &sel).unwrap().unwrap();
        pages::instance(&v, "24h")
    });
    let merged = heaptide_ui::flame::FlameScope {
        service: "fleet".into(),
        kind: "live".into(),
        ..Default::default()
    };
    let (flame, svg) = time(3, || {
        heaptide_analyzer::read::flames::svg(store, &merged, now).unwrap()
    });
    assert!(svg.is_some_and(|s| s.contains("fleet::site_")));
    [overview, hour, day, instance, flame]
}

/// `analyzer leaks --format json` over the store at `path`.
fn leaks_cli(path: &std::path::Path, extra: &[&str]) -> Vec<String> {
    leaks_cli_with(&bin("analyzer"), path, extra)
}

/// [`leaks_cli`] with the analyzer binary at `analyzer`.
/// Runs `analyzer leaks` of the binary `analyzer`: the leaks it found,
/// as "instance resource".
fn leaks_cli_with(
    analyzer: &std::path::Path,
    path: &std::path::Path,
    extra: &[&str],
) -> Vec<String> {
    let out = std::process::Command::new(analyzer)
        .args(["leaks", "--format", "json", "--store"])
        .arg(path)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut found: Vec<String> = v["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["verdict"] == "leak")
        .map(|f| {
            format!(
                "{} {}",
                f["instance"].as_str().unwrap_or("?"),
                f["resource"].as_str().unwrap_or("?")
            )
        })
        .collect();
    found.sort();
    found
}

/// Keeps the store's size in view when the run is read by hand.
fn store_size(path: &std::path::Path) -> u64 {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    eprintln!("store {}: {:.0} MiB", path.display(), size as f64 / MIB);
    size
}
