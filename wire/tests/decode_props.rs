//! Property tests of the pprof decoder, the same decoder the `pprof`
//! fuzz target drives: any bytes, and valid profiles with a few bytes
//! changed, either decode within the limits or fail with an error. None
//! panics and none expands past its budget.

use heaptide_wire::pprof::*;
use proptest::prelude::*;

fn valid() -> Vec<u8> {
    use prost::Message;
    let f = |n: &str| Frame::new(n, "src/lib.rs", 3);
    let stacks = vec![
        ProfileSample {
            frames: vec![f("leaf"), f("mid"), f("main")],
            objects: 3,
            bytes: 300,
            ..Default::default()
        },
        ProfileSample {
            frames: vec![f("other"), f("main")],
            objects: 1,
            bytes: 64,
            ..Default::default()
        },
    ];
    build_heap_profile(&stacks, 524_288, 1).encode_to_vec()
}

fn limits() -> DecodeLimits {
    DecodeLimits {
        max_bytes: 1 << 16,
        max_frames: 2_000,
        max_frames_per_stack: 64,
        max_text_bytes: 1 << 16,
        ..Default::default()
    }
}

fn check(bytes: &[u8]) {
    let limits = limits();
    let Ok(profile) = decode(bytes, &limits) else {
        return;
    };
    assert!(profile.sample.len() as u64 <= limits.max_samples);
    if let Ok(stacks) = heap_stacks(&profile, &limits) {
        let frames: usize = stacks.iter().map(|s| s.frames.len()).sum();
        assert!(frames as u64 <= limits.max_frames);
        assert!(stacks
            .iter()
            .all(|s| s.frames.len() as u64 <= limits.max_frames_per_stack));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes);
    }

    #[test]
    fn changed_profiles_stay_within_their_limits(
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        gzip in any::<bool>(),
    ) {
        let mut b = valid();
        let n = b.len();
        for (i, v) in edits {
            b[i % n] = v;
        }
        if gzip {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&b).unwrap();
            b = enc.finish().unwrap();
        }
        check(&b);
    }
}
