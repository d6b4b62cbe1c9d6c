//! Property tests of the analyzer's decoders of untrusted input, the same
//! ones the `ingest_body` and `budget_toml` fuzz targets drive: any bytes,
//! and valid inputs with a few bytes changed, are accepted within the
//! limits or refused with an error. None panics.

use heaptide_analyzer::check::budget::BudgetFile;
use heaptide_analyzer::ingest::{decode, Limits};
use heaptide_testkit::fixtures;
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000_000;

fn valid_body() -> Vec<u8> {
    let mut b = fixtures::batch(fixtures::agent("svc", "i-1", 7, NOW - 60_000), 1, NOW);
    b.samples.push(fixtures::metrics(
        NOW,
        &[("fds", 10.0), ("heap.allocated", 1e6)],
    ));
    b.profiles.push(fixtures::heap_profile(
        NOW,
        &[fixtures::stack(&["leaf", "main"], 4096, 1)],
    ));
    serde_json::to_vec(&b).unwrap()
}

fn check(body: &[u8], gzip: bool) {
    let limits = Limits::default();
    if let Ok(v) = decode(body, gzip, &limits, NOW) {
        let frames: usize = v
            .profiles
            .iter()
            .flat_map(|p| &p.stacks)
            .map(|s| s.frames.len())
            .sum();
        assert!(frames as u64 <= limits.profile.max_frames);
        assert_eq!(v.profiles.len(), v.batch.profiles.len());
    }
}

const BUDGET: &str = "[defaults]\nheap_growth_per_hour = \"1MiB\"\nfds_growth_per_hour = 5\n\n[service.api]\nheap_growth_per_hour = \"4MiB\"\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_body_is_decoded_or_refused(body in prop::collection::vec(any::<u8>(), 0..1024), gzip in any::<bool>()) {
        check(&body, gzip);
    }

    #[test]
    fn changed_batches_are_decoded_or_refused(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut b = valid_body();
        let n = b.len();
        for (i, v) in edits {
            b[i % n] = v;
        }
        check(&b, false);
    }

    #[test]
    fn any_budget_text_parses_or_is_refused(text in ".{0,300}") {
        let _ = BudgetFile::parse(&text);
    }

    #[test]
    fn changed_budgets_parse_or_are_refused(edits in prop::collection::vec((any::<usize>(), any::<char>()), 1..4)) {
        let mut chars: Vec<char> = BUDGET.chars().collect();
        let n = chars.len();
        for (i, c) in edits {
            chars[i % n] = c;
        }
        let _ = BudgetFile::parse(&chars.into_iter().collect::<String>());
    }
}
