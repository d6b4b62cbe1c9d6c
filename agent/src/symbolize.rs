//! Turns return addresses from heap dumps into function names, inlined
//! frames and `file:line`.
//!
//! Names come from the symbol table of the loaded object that holds each
//! address (`objects`): the function the code was compiled into, with its
//! full path. With lines on, that object's DWARF adds the functions
//! inlined at the address, innermost first, each with its `file:line`
//! (`dwarf`), within a bounded amount of memory.

use std::collections::HashMap;
use std::sync::Arc;

use heaptide_wire::pprof::Frame;

/// Where a profile's addresses are named.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Symbolize {
    /// In this process, from its own binaries: names cost the agent the
    /// memory of reading symbol tables and DWARF.
    Agent,
    /// By the analyzer, from the debug file of each object's build-id
    /// (uploaded by an agent when it asks): profiles carry addresses and
    /// mappings only, and the agent reads no symbols at all.
    #[default]
    Analyzer,
}

impl Symbolize {
    /// The name used in `HEAPTIDE_SYMBOLIZE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Symbolize::Agent => "agent",
            Symbolize::Analyzer => "analyzer",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Symbolize> {
        [Symbolize::Agent, Symbolize::Analyzer]
            .into_iter()
            .find(|u| u.as_str() == s)
    }
}

/// Caches resolved addresses, bounded by entry count and evicting the
/// least recently used: each [`Symbolizer::prepare`] is one generation,
/// every address of the profile it prepares is marked with it, and past
/// the bound the entries of the oldest generations go first. Addresses of
/// the current profile are never evicted while it is symbolized, so each
/// profile's misses are resolved in one pass over the binary.
pub(crate) struct Symbolizer {
    cache: HashMap<u64, (Arc<[Frame]>, u64)>,
    generation: u64,
    max_entries: usize,
    lines: bool,
    /// Passes over the binary so far.
    passes: u64,
    /// Each object's DWARF unit index, by path.
    units: HashMap<String, heaptide_symbols::dwarf::UnitIndex>,
    /// Names are left to the analyzer: nothing is looked up here.
    remote: bool,
}

impl Symbolizer {
    /// `lines` adds inlined frames and `file:line` from DWARF; `at` says
    /// whether this process names addresses at all.
    pub(crate) fn new(max_entries: usize, lines: bool, at: Symbolize) -> Self {
        Symbolizer {
            cache: HashMap::new(),
            generation: 0,
            max_entries,
            lines,
            passes: 0,
            units: HashMap::new(),
            remote: at == Symbolize::Analyzer,
        }
    }

    /// Resolves every address not yet cached, opening the executable once
    /// and closing it after: nothing of it stays mapped between profiles.
    pub(crate) fn prepare(&mut self, addrs: impl IntoIterator<Item = u64>) {
        if self.remote {
            return;
        }
        self.generation += 1;
        let now = self.generation;
        let mut misses: Vec<u64> = Vec::new();
        for a in addrs {
            match self.cache.get_mut(&a) {
                Some((_, used)) => *used = now,
                None => misses.push(a),
            }
        }
        if misses.is_empty() {
            return;
        }
        misses.sort_unstable();
        misses.dedup();
        self.passes += 1;
        let frames = self.lookup(&misses);
        for (a, f) in misses.into_iter().zip(frames) {
            self.cache.insert(a, (f.into(), now));
        }
        self.evict();
    }

    /// Drops the least recently used entries past the bound, down to nine
    /// tenths of it so that eviction is rare; never this generation's.
    fn evict(&mut self) {
        if self.cache.len() <= self.max_entries {
            return;
        }
        let keep = self.max_entries - self.max_entries / 10;
        let mut ages: Vec<u64> = self.cache.values().map(|(_, g)| *g).collect();
        ages.sort_unstable();
        let cut = ages[ages.len() - keep.max(1)].min(self.generation);
        let now = self.generation;
        self.cache.retain(|_, (_, g)| *g >= cut || *g == now);
    }

    /// Frames of `misses`, sorted, in one pass over each object: for each
    /// address innermost first, the last named from the symbol table, or
    /// by the address where nothing names it.
    fn lookup(&mut self, misses: &[u64]) -> Vec<Vec<Frame>> {
        let mut frames: Vec<Vec<Frame>> = misses.iter().map(|_| Vec::new()).collect();
        for obj in crate::objects::loaded() {
            let mine: Vec<usize> = (0..misses.len())
                .filter(|i| obj.contains(misses[*i]))
                .collect();
            if mine.is_empty() {
                continue;
            }
            // A return address points after the call: look up the call.
            let probes: Vec<u64> = mine
                .iter()
                .map(|&i| misses[i].wrapping_sub(1).wrapping_sub(obj.bias))
                .collect();
            let index = self.units.entry(obj.path.clone()).or_default();
            let found = heaptide_symbols::resolve(&obj.path, &probes, self.lines, index);
            for (&i, f) in mine.iter().zip(found) {
                frames[i] = f;
            }
        }
        for (a, f) in misses.iter().zip(&mut frames) {
            match f.last_mut() {
                Some(outer) if outer.function.is_empty() => {
                    outer.function = format!("{a:#x}").into()
                }
                Some(_) => {}
                None => f.push(Frame::new(format!("{a:#x}"), "", 0)),
            }
        }
        frames
    }

    /// Frames for one address, after [`Symbolizer::prepare`].
    fn resolve(&mut self, addr: u64) -> Arc<[Frame]> {
        if !self.cache.contains_key(&addr) {
            self.prepare([addr]);
        }
        self.cache
            .get(&addr)
            .map(|(f, _)| f.clone())
            .unwrap_or_else(|| vec![Frame::new(format!("{addr:#x}"), "", 0)].into())
    }

    /// A whole stack, leaf first, without jemalloc's own sampling frames:
    /// each frame with the return address it was named from.
    pub(crate) fn stack(&mut self, addrs: &[u64]) -> (Vec<u64>, Vec<Frame>) {
        if addrs.is_empty() {
            // A stack jemalloc could not unwind: its bytes are shown, and
            // named for what they are, rather than dropped.
            return (vec![0], vec![not_unwound()]);
        }
        if self.remote {
            // A frame with no name per address: the analyzer names them,
            // and drops jemalloc's own frames once it knows which they are.
            let unnamed = addrs.iter().map(|_| Frame::new("", "", 0)).collect();
            return (addrs.to_vec(), unnamed);
        }
        let resolved: Vec<Arc<[Frame]>> = addrs.iter().map(|&a| self.resolve(a)).collect();
        let internal = heaptide_symbols::allocator_frames(&resolved);
        let mut frames = Vec::with_capacity(addrs.len());
        let mut at = Vec::with_capacity(addrs.len());
        for (a, f) in addrs.iter().zip(&resolved).skip(internal) {
            at.extend(std::iter::repeat_n(*a, f.len()));
            frames.extend(f.iter().cloned());
        }
        (at, frames)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }

    #[cfg(test)]
    pub(crate) fn passes(&self) -> u64 {
        self.passes
    }
}

/// The one frame of a sampled stack that could not be unwound.
fn not_unwound() -> Frame {
    Frame {
        function: heaptide_symbols::NOT_UNWOUND.into(),
        file: "".into(),
        line: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_with_a_distinct_name() -> u64 {
        a_function_with_a_distinct_name as *const () as u64
    }

    #[test]
    fn resolves_own_functions_and_bounds_the_cache() {
        let here = a_function_with_a_distinct_name();
        for lines in [false, true] {
            let mut s = Symbolizer::new(2, lines, Symbolize::Agent);
            // +2: a "return address" inside the function.
            let frames = s.resolve(here + 2);
            assert!(
                frames[0]
                    .function
                    .contains("a_function_with_a_distinct_name"),
                "{frames:?}"
            );
            assert_eq!(
                frames[0].file.ends_with("symbolize.rs"),
                lines,
                "{frames:?}"
            );
            for a in 0..10u64 {
                s.resolve(0x10 + a);
                assert!(s.len() <= 2);
            }
        }
    }

    #[inline(never)]
    fn outer_with_an_inlined_call() -> u64 {
        std::hint::black_box(inlined_helper_with_a_distinct_name())
    }

    /// Inlined even in a debug build; the address it returns is inside its
    /// inlined code, in `outer_with_an_inlined_call`.
    #[inline(always)]
    fn inlined_helper_with_a_distinct_name() -> u64 {
        let mut at = [0usize; 1];
        crate::unwind::walk(&mut at, 0);
        at[0] as u64
    }

    /// With lines on, an inlined call is a frame of its own, named with its
    /// module and placed at its line, inside the function it was inlined
    /// into, which the symbol table names.
    #[test]
    fn a_stack_that_was_not_unwound_keeps_its_bytes_under_a_name_of_its_own() {
        let mut s = Symbolizer::new(10, false, Symbolize::Agent);
        let (at, frames) = s.stack(&[]);
        assert_eq!(at, [0]);
        assert_eq!(&*frames[0].function, heaptide_symbols::NOT_UNWOUND);
    }

    #[test]
    fn inlined_calls_are_frames_of_their_own() {
        let mut s = Symbolizer::new(100, true, Symbolize::Agent);
        let frames = s.resolve(outer_with_an_inlined_call());
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert!(
            frames[0]
                .function
                .ends_with("symbolize::inlined_helper_with_a_distinct_name"),
            "{frames:?}"
        );
        assert!(frames[0].file.ends_with("symbolize.rs") && frames[0].line > 0);
        assert!(frames[1].function.contains("outer_with_an_inlined_call"));
        assert!(frames[1].line > 0 && frames[1].line < frames[0].line);
        let names_only =
            Symbolizer::new(100, false, Symbolize::Agent).resolve(outer_with_an_inlined_call());
        assert_eq!(names_only.len(), 1);
    }

    /// An address in libc is named from libc's own symbols, and an address
    /// in data is never named after a data symbol.
    #[test]
    fn libc_frames_carry_libc_names_and_data_is_never_a_function() {
        static DATA: [u8; 4096] = [1; 4096];
        let mut s = Symbolizer::new(100, false, Symbolize::Agent);
        // +1: a "return address" just past the function's first byte.
        let qsort = libc::qsort as *const () as u64 + 1;
        let f = s.resolve(qsort);
        assert!(f[0].function.contains("qsort"), "{f:?}");
        let data = std::hint::black_box(DATA.as_ptr()) as u64 + 100;
        let f = s.resolve(data);
        assert!(f[0].function.starts_with("0x"), "{f:?}");
    }

    /// A profile larger than what is left of the cache is resolved in one
    /// pass, keeps its own entries, and evicts the least recently used.
    #[test]
    fn each_profile_is_one_pass_and_eviction_is_least_recently_used() {
        let here = a_function_with_a_distinct_name();
        let mut s = Symbolizer::new(10, false, Symbolize::Agent);
        let first: Vec<u64> = (0..8).map(|i| here + 1 + i).collect();
        s.prepare(first.clone());
        assert_eq!(s.passes(), 1);
        // The next profile shares two addresses and brings eight new ones.
        let second: Vec<u64> = first[..2]
            .iter()
            .copied()
            .chain((0..8).map(|i| 0x1000 + i))
            .collect();
        s.prepare(second.clone());
        assert_eq!(s.passes(), 2);
        for a in &second {
            s.stack(&[*a]);
        }
        assert_eq!(
            s.passes(),
            2,
            "no address of the profile was looked up again"
        );
        assert!(s.len() <= 10, "{}", s.len());
        assert!(second.iter().all(|a| s.cache.contains_key(a)));
        assert!(!s.cache.contains_key(&first[7]), "the oldest went first");
    }
}
