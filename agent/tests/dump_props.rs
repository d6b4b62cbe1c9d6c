//! Property tests of the jemalloc heap dump parser, the one the
//! `heap_dump` fuzz target drives: any text, and dump-shaped text, is
//! parsed or refused without a panic.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_text_is_parsed_or_refused(text in ".{0,400}") {
        let _ = heaptide_agent::fuzz_parse_heap_dump(&text);
    }

    #[test]
    fn dump_shaped_text_is_parsed_or_refused(
        text in "heap_v2/[0-9]{0,8}\n(( t\\*: [0-9]{1,4}: [0-9]{1,8} \\[0: 0\\]\n)|(@( 0x[0-9a-f]{1,6}){0,6}\n)|( t[0-9]: [0-9]{1,3}: [0-9]{1,6} \\[0: 0\\] [a-z]{0,4}\n)){0,30}(MAPPED_LIBRARIES:\n)?"
    ) {
        let _ = heaptide_agent::fuzz_parse_heap_dump(&text);
    }
}
