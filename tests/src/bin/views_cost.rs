//! What the ClickHouse store's materialized views cost at insert: the same
//! raw samples inserted into this build's schema, into schema 2's rollups
//! (one table for both tiers, counting distinct times with `uniqExact`),
//! and into this build's schema with its views dropped, side by side,
//! alternating round by round.
//!
//! `cargo run --release -p heaptide-tests --bin views_cost [-- --samples 10000000 --rounds 3 --block 500000]`
//!
//! A ClickHouse server of this run's own holds a source table of synthetic
//! samples (1,000 segments, 8 metrics, 10 s apart); each round makes each
//! schema afresh and inserts the samples into its `samples` table in
//! blocks of `--block` rows: 500,000 by default, as a flusher's block under
//! heavy load; a few hundred, as live ingest of a thousand agents inserts
//! every 200 ms, shows what each insert costs apart from its rows.
//! Reported: the median time per schema and the bytes of each table.

use std::time::Instant;

use heaptide_analyzer::store::{ClickHouseStore, ClickHouseUrl};
use heaptide_testkit::clickhouse::ClickHouse;

/// Schema 2's raw samples table, which the views read.
const SAMPLES: &str = "CREATE TABLE {db}.samples (segment Int64, metric String, res UInt32,
    ts_ms Int64, value Float64, vmin Float64, vmax Float64, n UInt32)
 ENGINE = ReplacingMergeTree PARTITION BY (toDate(intDiv(ts_ms, 1000)), res)
 ORDER BY (segment, metric, res, ts_ms)";

fn arg(name: &str, default: u64) -> u64 {
    heaptide_tests::flag_value(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Makes `db` in `schema`'s shape: schema 2's tables, or this build's as
/// its store makes them, with or without its views.
fn make(ch: &ClickHouse, db: &str, schema: &str) {
    ch.query(&format!("DROP DATABASE IF EXISTS {db}"));
    if schema == "schema 2" {
        ch.query(&format!("CREATE DATABASE {db}"));
        ch.query(&SAMPLES.replace("{db}", db));
        for t in heaptide_testkit::clickhouse::schema_2_rollups(db) {
            ch.query(&t);
        }
    } else {
        let url = ClickHouseUrl::parse(&ch.url(db)).expect("url");
        drop(ClickHouseStore::open(url).expect("this build's schema"));
    }
    if schema == "no views" {
        let views = ch.query(&format!(
            "SELECT name FROM system.tables WHERE database = '{db}'
               AND engine = 'MaterializedView' FORMAT TSV"
        ));
        for v in views.lines() {
            ch.query(&format!("DROP TABLE {db}.{v}"));
        }
    }
}

fn main() {
    let (samples, rounds) = (arg("--samples", 10_000_000), arg("--rounds", 3));
    let block = arg("--block", 500_000).max(1);
    let ch = ClickHouse::start();
    let start = heaptide_testkit::now_ms() - 86_400_000;
    // Numbered rows, so that a block is a range of the key, not an offset
    // scanned from the start.
    ch.query("CREATE TABLE default.source (k UInt64, segment Int64, metric String, res UInt32, ts_ms Int64, value Float64, vmin Float64, vmax Float64, n UInt32) ENGINE = MergeTree ORDER BY k");
    ch.query(&format!(
        "INSERT INTO default.source SELECT number, toInt64(number % 1000) * 7919 AS segment,
            concat('metric.', toString(intDiv(number, 1000) % 8)) AS metric, toUInt32(0),
            {start} + toInt64(intDiv(number, 8000)) * 10000 AS ts_ms,
            toFloat64(number % 977) AS v, v, v, toUInt32(1)
         FROM system.numbers LIMIT {samples}"
    ));
    let schemas = ["schema 2", "this build", "no views"];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); schemas.len()];
    for round in 0..rounds {
        for (k, schema) in schemas.iter().enumerate() {
            let db = format!("views_{k}");
            make(&ch, &db, schema);
            let t = Instant::now();
            for off in (0..samples).step_by(block as usize) {
                ch.query(&format!(
                    "INSERT INTO {db}.samples SELECT segment, metric, res, ts_ms, value, vmin,
                       vmax, n FROM default.source WHERE k >= {off} AND k < {}",
                    off + block
                ));
            }
            times[k].push(t.elapsed().as_secs_f64());
            eprintln!("round {round}: {schema}: {:.2} s", times[k].last().unwrap());
        }
    }
    println!("| schema | insert of {samples} samples in blocks of {block} (median of {rounds}) | tables |");
    println!("|---|---|---|");
    for (k, schema) in schemas.iter().enumerate() {
        times[k].sort_by(f64::total_cmp);
        let sizes = ch.query(&format!(
            "SELECT table, formatReadableSize(sum(bytes_on_disk)) FROM system.parts
             WHERE database = 'views_{k}' AND active GROUP BY table ORDER BY table FORMAT TSV"
        ));
        let sizes: Vec<String> = sizes.lines().map(|l| l.replace('\t', " ")).collect();
        println!(
            "| {schema} | {:.2} s | {} |",
            times[k][times[k].len() / 2],
            sizes.join(", ")
        );
    }
}
