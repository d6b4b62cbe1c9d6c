//! Turns return addresses from heap dumps into function names.

use std::collections::HashMap;
use std::sync::Arc;

use heaptide_wire::pprof::Frame;

/// Caches resolved addresses. Bounded by entry count: when full it is
/// cleared, which costs one re-resolution of live stacks and keeps memory
/// flat however many distinct addresses a long-running service produces.
pub(crate) struct Symbolizer {
    cache: HashMap<u64, Arc<[Frame]>>,
    max_entries: usize,
    misses: usize,
}

impl Symbolizer {
    pub(crate) fn new(max_entries: usize) -> Self {
        Symbolizer {
            cache: HashMap::new(),
            max_entries,
            misses: 0,
        }
    }

    /// Frames for one return address, innermost inlined frame first.
    pub(crate) fn resolve(&mut self, addr: u64) -> Arc<[Frame]> {
        if let Some(f) = self.cache.get(&addr) {
            return f.clone();
        }
        self.misses += 1;
        if self.cache.len() >= self.max_entries {
            self.cache.clear();
        }
        let mut frames = Vec::new();
        // A return address points after the call; look up the call itself.
        let lookup = addr.saturating_sub(1) as usize as *mut std::ffi::c_void;
        backtrace::resolve(lookup, |sym| {
            let function = sym
                .name()
                .map(|n| format!("{n:#}"))
                .unwrap_or_else(|| format!("{addr:#x}"));
            frames.push(Frame {
                function,
                file: sym
                    .filename()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                line: sym.lineno().unwrap_or(0),
            });
        });
        if frames.is_empty() {
            frames.push(Frame {
                function: format!("{addr:#x}"),
                file: String::new(),
                line: 0,
            });
        }
        let frames: Arc<[Frame]> = frames.into();
        self.cache.insert(addr, frames.clone());
        frames
    }

    /// Frees the debug info that resolving loaded. It takes tens of MiB for
    /// a large binary, while the names it produced are cached here; after
    /// warm-up most profiles resolve nothing new and load nothing.
    pub(crate) fn release_debug_info(&mut self) {
        if self.misses > 0 {
            backtrace::clear_symbol_cache();
            self.misses = 0;
        }
    }

    /// A whole stack, leaf first, without jemalloc's own sampling frames.
    pub(crate) fn stack(&mut self, addrs: &[u64]) -> Vec<Frame> {
        let mut out = Vec::with_capacity(addrs.len() + 4);
        for &a in addrs {
            out.extend(self.resolve(a).iter().cloned());
        }
        let internal = out
            .iter()
            .take_while(|f| is_jemalloc_internal(&f.function))
            .count();
        out.drain(..internal.min(out.len().saturating_sub(1)));
        out
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}

/// Frames of jemalloc's sampling path itself, which every stack starts with.
fn is_jemalloc_internal(name: &str) -> bool {
    name.starts_with("_rjem_")
        || name.starts_with("je_")
        || name.starts_with("prof_")
        || name.starts_with("imalloc")
        || name.starts_with("0x")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_with_a_distinct_name() -> u64 {
        let mut addr = 0;
        backtrace::trace(|f| {
            addr = f.ip() as u64;
            false
        });
        addr
    }

    #[test]
    fn resolves_own_functions_and_bounds_the_cache() {
        let mut s = Symbolizer::new(2);
        let here = a_function_with_a_distinct_name();
        let frames = s.resolve(here + 1);
        assert!(!frames.is_empty());
        for a in 0..10u64 {
            s.resolve(0x10 + a);
            assert!(s.len() <= 2);
        }
    }
}
