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

use base64::Engine;
use heaptide_testkit::fixtures;
use heaptide_tests::{analyzer, flag_value, http, Proc};
use heaptide_wire::pprof::{self, Frame, ObjectMapping, ProfileSample};
use heaptide_wire::{Batch, EncodedProfile};

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
        let wanted = post(&an, &batch);
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

/// This executable's code mapping, as an agent describes it.
fn own_text_mapping() -> ObjectMapping {
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let exe = exe.to_str().unwrap().to_owned();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| l.ends_with(&exe) && l.split_whitespace().nth(1) == Some("r-xp"))
        .expect("this executable's code mapping");
    let f: Vec<&str> = line.split_whitespace().collect();
    let (lo, hi) = f[0].split_once('-').unwrap();
    ObjectMapping {
        memory_start: u64::from_str_radix(lo, 16).unwrap(),
        memory_limit: u64::from_str_radix(hi, 16).unwrap(),
        file_offset: u64::from_str_radix(f[2], 16).unwrap(),
        build_id: heaptide_symbols::build_id(&exe).expect("a build-id"),
        file: exe,
    }
}

/// `n` addresses spread evenly over the mapping's code.
fn spread(m: &ObjectMapping, n: usize) -> Vec<u64> {
    let step = (m.memory_limit - m.memory_start) / (n as u64 + 1);
    (1..=n as u64)
        .map(|k| m.memory_start + k * step + 1)
        .collect()
}

fn fleet_batch(instance: &str, now: i64, m: &ObjectMapping, addrs: &[u64]) -> Batch {
    let stacks: Vec<ProfileSample> = addrs
        .chunks(10)
        .map(|c| ProfileSample {
            frames: c.iter().map(|_| Frame::new("", "", 0)).collect(),
            objects: 1,
            bytes: 65_536,
            ..Default::default()
        })
        .collect();
    let frames: Vec<Vec<u64>> = addrs.chunks(10).map(<[u64]>::to_vec).collect();
    let p = pprof::build_native_heap_profile(
        &stacks,
        &frames,
        std::slice::from_ref(m),
        false,
        524_288,
        now * 1_000_000,
    );
    let mut b = fixtures::batch(fixtures::agent("fleet", instance, 1, now - 60_000), 1, now);
    b.samples.push(fixtures::metrics(now, &[("fds", 10.0)]));
    b.profiles.push(EncodedProfile {
        ts_ms: now,
        sample_period_bytes: 524_288,
        pprof_gz_base64: base64::engine::general_purpose::STANDARD.encode(pprof::encode_gzip(&p)),
        ages: Vec::new(),
    });
    b
}

fn post(an: &Proc, batch: &Batch) -> Vec<String> {
    let mut r = http()
        .post(an.url(heaptide_wire::INGEST_PATH))
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(batch).unwrap())
        .unwrap();
    let reply = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status(), 200, "{reply}");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    v[heaptide_wire::DEBUGINFO_WANTED]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| Some(i.as_str()?.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn upload(an: &Proc, id: &str, instance: &str) {
    let url = an.url(&heaptide_wire::debuginfo_path(id));
    let exe = std::fs::File::open("/proc/self/exe").unwrap();
    let r = http()
        .put(&url)
        .query("service", "fleet")
        .query("instance", instance)
        .send(exe)
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
