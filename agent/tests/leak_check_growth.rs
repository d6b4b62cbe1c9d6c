//! `LeakCheck` against the classic leak: a global collection that gains
//! one entry per call. Such collections grow by doublings or in nodes, a
//! staircase, whatever their growth policy; each must fail a 0-byte
//! budget, and a closure that allocates and frees a lot must pass.

heaptide_agent::global_allocator!();

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use heaptide_agent::testing::{LeakCheck, LeakCheckError};

static MAP: Mutex<Option<HashMap<u64, u64>>> = Mutex::new(None);
static VEC: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static TREE: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());
static TEXT: Mutex<String> = Mutex::new(String::new());

fn fails(name: &str, mut f: impl FnMut()) -> String {
    match LeakCheck::new(name).max_bytes_per_iter(0.0).run(&mut f) {
        Err(e @ LeakCheckError::Leak { .. }) => e.to_string(),
        Err(e) => panic!("{name}: {e}"),
        Ok(r) => panic!("{name}: a collection growing by one entry a call passed: {r:?}"),
    }
}

#[test]
fn a_hash_map_gaining_a_key_per_call_fails() {
    let mut k = 0u64;
    let msg = fails("hash map", || {
        k += 1;
        MAP.lock()
            .unwrap()
            .get_or_insert_with(HashMap::new)
            .insert(k, k);
    });
    assert!(msg.contains("over budget"), "{msg}");
}

#[test]
fn a_vec_gaining_an_element_per_call_fails() {
    let mut k = 0u64;
    fails("vec", || {
        k += 1;
        VEC.lock().unwrap().push(k);
    });
}

#[test]
fn a_btree_map_gaining_a_key_per_call_fails() {
    let mut k = 0u64;
    fails("btree map", || {
        k += 1;
        TREE.lock().unwrap().insert(k, k);
    });
}

#[test]
fn a_string_gaining_text_per_call_fails() {
    fails("string", || {
        TEXT.lock().unwrap().push_str("request served\n")
    });
}

#[test]
fn a_closure_that_allocates_and_frees_a_lot_passes() {
    let mut k = 0usize;
    let r = LeakCheck::new("churn").max_bytes_per_iter(0.0).run(|| {
        k += 1;
        let mut m: HashMap<usize, Vec<u8>> = HashMap::new();
        for i in 0..64 {
            m.insert(i, vec![0u8; 1 + (i * k) % 4096]);
        }
        let s: String = (0..200)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        std::hint::black_box((m, s));
    });
    assert!(r.is_ok(), "{}", r.unwrap_err());
}

// Boxed on purpose: each call leaks one small allocation of its own.
#[allow(clippy::vec_box)]
static SMALL: Mutex<Vec<Box<u64>>> = Mutex::new(Vec::new());

#[test]
fn a_leak_too_small_to_sample_is_not_blamed_on_a_wrong_site() {
    let mut k = 0u64;
    let msg = fails("small", || {
        k += 1;
        SMALL.lock().unwrap().push(Box::new(k));
    });
    assert!(msg.contains("cannot be named"), "{msg}");
    assert!(
        msg.contains("iterations") && msg.contains("lg_prof_sample"),
        "says how to get them: {msg}"
    );
    assert!(
        !msg.contains("growing allocation sites (heap profile diff"),
        "{msg}"
    );
}
