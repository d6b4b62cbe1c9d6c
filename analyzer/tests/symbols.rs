//! The analyzer's symbolizer, on both stores: a profile whose frames are
//! addresses of this test binary, in a mapping with its build-id, is named
//! from the binary found in a debug directory, once; a second analyzer
//! sharing the store (with no debug files at all) names the same
//! addresses from what the first kept, with no pass of its own.

use base64::Engine;
use heaptide_analyzer::ingest::{accept, Limits, ValidBatch};
use heaptide_analyzer::store::{ClickHouseStore, ClickHouseUrl, SqliteStore, Store};
use heaptide_analyzer::symbols::Symbols;
use heaptide_testkit::clickhouse::{database, ClickHouse};
use heaptide_testkit::fixtures;
use heaptide_wire::pprof::{self, Frame, ObjectMapping, ProfileSample};
use heaptide_wire::EncodedProfile;
use std::sync::atomic::Ordering::Relaxed;

#[inline(never)]
fn a_function_the_analyzer_names() -> u64 {
    std::hint::black_box(a_function_the_analyzer_names as *const () as u64)
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

/// A batch with one profile of one stack: a return address inside
/// `a_function_the_analyzer_names`, unnamed.
fn unnamed_batch(now: i64) -> ValidBatch {
    let addr = a_function_the_analyzer_names() + 4;
    let stack = ProfileSample {
        frames: vec![Frame::new("", "", 0)],
        objects: 1,
        bytes: 4096,
        ..Default::default()
    };
    let p = pprof::build_native_heap_profile(
        &[stack],
        &[vec![addr]],
        &[own_text_mapping()],
        false,
        524_288,
        now * 1_000_000,
    );
    let mut b = fixtures::batch(fixtures::agent("svc", "a", 1, now - 60_000), 1, now);
    b.profiles.push(EncodedProfile {
        ts_ms: now - 1_000,
        sample_period_bytes: 524_288,
        pprof_gz_base64: base64::engine::general_purpose::STANDARD.encode(pprof::encode_gzip(&p)),
        ages: Vec::new(),
    });
    accept(b, &Limits::default(), now).unwrap()
}

fn first_frame(vb: &ValidBatch) -> String {
    vb.profiles[0].stacks[0].frames[0].function.to_string()
}

#[test]
fn addresses_are_named_once_for_every_analyzer_sharing_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let debug = dir.path().join("debug");
    std::fs::create_dir(&debug).unwrap();
    std::fs::copy(std::env::current_exe().unwrap(), debug.join("the-binary")).unwrap();
    let ch = ClickHouse::shared();
    let url = ClickHouseUrl::parse(&ch.url(&database("symbols"))).unwrap();
    let stores: Vec<(&str, Box<dyn Store>)> = vec![
        (
            "sqlite",
            Box::new(SqliteStore::open(dir.path().join("s.db")).unwrap()),
        ),
        ("clickhouse", Box::new(ClickHouseStore::open(url).unwrap())),
    ];
    let limits = Limits::default().profile;
    let now = heaptide_analyzer::select::now_ms();
    for (name, store) in &stores {
        let mut vb = unnamed_batch(now);
        assert!(first_frame(&vb).starts_with("0x"), "{name}: sent unnamed");
        let first = Symbols::new(
            vec![debug.clone()],
            dir.path().join(format!("cache-{name}")),
        );
        first.name_batch(&mut vb, &**store, &limits).unwrap();
        assert!(
            first_frame(&vb).ends_with("a_function_the_analyzer_names"),
            "{name}: {}",
            first_frame(&vb)
        );
        assert!(vb.profiles[0].stacks[0].frames[0]
            .file
            .ends_with("symbols.rs"));
        // The profile kept as received is named too, for pprof downloads.
        let kept = pprof::decode(&vb.profiles[0].raw, &limits).unwrap();
        let named = pprof::heap_stacks(&kept, &limits).unwrap();
        assert_eq!(named, vb.profiles[0].stacks, "{name}");
        // Again, from memory: no second pass.
        let mut again = unnamed_batch(now);
        first.name_batch(&mut again, &**store, &limits).unwrap();
        assert_eq!(first_frame(&again), first_frame(&vb), "{name}");
        assert_eq!(first.counts.passes.load(Relaxed), 1, "{name}");
        // Another analyzer, with no debug files: the store names it.
        let second = Symbols::new(Vec::new(), None, dir.path().join(format!("other-{name}")));
        let mut third = unnamed_batch(now);
        second.name_batch(&mut third, &**store, &limits).unwrap();
        assert_eq!(first_frame(&third), first_frame(&vb), "{name}");
        assert_eq!(second.counts.passes.load(Relaxed), 0, "{name}");
        assert_eq!(second.counts.missing.load(Relaxed), 0, "{name}");
    }
}

#[test]
fn without_a_debug_file_addresses_stay_as_they_came() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
    let symbols = Symbols::new(vec![dir.path().join("none")], None, dir.path().join("cache"));
    let now = heaptide_analyzer::select::now_ms();
    let mut vb = unnamed_batch(now);
    let before = vb.profiles[0].stacks.clone();
    symbols
        .name_batch(&mut vb, &store, &Limits::default().profile)
        .unwrap();
    assert_eq!(vb.profiles[0].stacks, before);
    assert_eq!(symbols.counts.missing.load(Relaxed), 1);
    assert_eq!(symbols.counts.passes.load(Relaxed), 0);
}
