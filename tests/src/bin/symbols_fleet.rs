//! A fleet's names, resolved once.
//!
//! `cargo run --release -p heaptide-tests --bin symbols_fleet -- --instances 1000 --stacks 50`
//!
//! Plays a fleet of `--instances` instances of one binary (this one), each
//! sending a batch whose heap profile holds `--stacks` stacks of 10
//! unnamed frames (addresses of this binary's code, in its mapping, with
//! its build-id), as agents do by default, to a real `analyzer serve`
//! with no debug files. The first reply asks for the build-id; this
//! process uploads itself, as an agent would, and the fleet goes on.
//!
//! It prints: how many agents were asked, uploads, passes over the debug
//! file and addresses resolved (one pass and `stacks × 10` addresses for
//! the whole fleet is the target, not one per instance); how long after
//! the upload a profile was named and visible; and the ingest latency of
//! batches before and after.

use std::time::{Duration, Instant};

use heaptide_testkit::fixtures;
use heaptide_testkit::unnamed::{own_text_mapping, posted, unnamed_profile};
use heaptide_tests::{analyzer, flag_value, http, Proc};
use heaptide_wire::pprof::ObjectMapping;
use heaptide_wire::Batch;

fn arg(name: &str, default: usize) -> usize {
    flag_value(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (instances, stacks) = (arg("--instances", 1000), arg("--stacks", 50));
    let dir = tempfile::tempdir().unwrap();
    let an = analyzer(dir.path(), &dir.path().join("fleet.db"), "127.0.0.1:0", &[]);
    let mapping = own_text_mapping();
    let addresses = spread(&mapping, stacks * 10);
    let start = heaptide_analyzer::select::now_ms() - 60_000;
    let (mut asked, mut uploaded_at, mut named_after) = (0, None::<Instant>, None);
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for i in 0..instances {
        let batch = fleet_batch(
            &format!("fleet-{i}"),
            start + i as i64,
            &mapping,
            &addresses,
        );
        let t = Instant::now();
        let wanted = posted(&an, &batch);
        let took = t.elapsed();
        if uploaded_at.is_some() {
            &mut after
        } else {
            &mut before
        }
        .push(took);
        if !wanted.is_empty() {
            asked += 1;
        }
        if wanted.contains(&mapping.build_id) && uploaded_at.is_none() {
            upload(&an, &mapping.build_id, &format!("fleet-{i}"));
            uploaded_at = Some(Instant::now());
            continue;
        }
        if let (Some(at), None) = (uploaded_at, named_after) {
            if is_named(&an, &format!("fleet-{i}")) {
                named_after = Some(at.elapsed());
            }
        }
    }
    let m = an.get("/metrics").1;
    let counter = |name: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    println!("| instances | addresses a profile | agents asked | uploads | passes over the debug file | addresses resolved | named and visible after the upload | ingest p50 / p99 before | after |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {instances} | {} | {asked} | {} | {} | {} | {:?} | {:?} / {:?} | {:?} / {:?} |",
        addresses.len(),
        counter("heaptide_debuginfo_uploads_total"),
        counter("heaptide_symbolization_passes_total"),
        counter("heaptide_symbolized_addresses_total"),
        named_after,
        quantile(&mut before, 0.5),
        quantile(&mut before, 0.99),
        quantile(&mut after, 0.5),
        quantile(&mut after, 0.99),
    );
}

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort_unstable();
    v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// `n` addresses spread evenly over the mapping's code.
fn spread(m: &ObjectMapping, n: usize) -> Vec<u64> {
    let step = (m.memory_limit - m.memory_start) / (n as u64 + 1);
    (1..=n as u64)
        .map(|k| m.memory_start + k * step + 1)
        .collect()
}

fn fleet_batch(instance: &str, now: i64, m: &ObjectMapping, addrs: &[u64]) -> Batch {
    let stacks: Vec<Vec<u64>> = addrs.chunks(10).map(<[u64]>::to_vec).collect();
    let mut b = fixtures::batch(fixtures::agent("fleet", instance, 1, now - 60_000), 1, now);
    b.samples.push(fixtures::metrics(now, &[("fds", 10.0)]));
    b.profiles.push(unnamed_profile(&stacks, m, now));
    b
}

fn upload(an: &Proc, id: &str, instance: &str) {
    let url = an.url(&heaptide_wire::debuginfo_path(id));
    // What an agent sends: the executable's debug-only form.
    let body = heaptide_symbols::DebugOnly::open("/proc/self/exe").unwrap();
    let r = http()
        .put(&url)
        .query("service", "fleet")
        .query("instance", instance)
        .header("Content-Length", &body.len().to_string())
        .send(ureq::SendBody::from_owned_reader(body))
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Whether the instance's latest profile has named frames.
fn is_named(an: &Proc, instance: &str) -> bool {
    let v = an.get_json(&format!(
        "/v1/profile?service=fleet&instance={instance}&format=json"
    ));
    v["stacks"].as_array().is_some_and(|s| {
        s.iter().any(|st| {
            st["frames"].as_array().is_some_and(|f| {
                f.iter()
                    .any(|f| !f["function"].as_str().unwrap_or("0x").starts_with("0x"))
            })
        })
    })
}
