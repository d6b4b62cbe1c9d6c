//! heaptide's symbolizer: the function names, inlined frames and
//! `file:line` at addresses of an ELF object, read from its symbol table
//! and DWARF within a memory bound.
//!
//! Both sides of heaptide use it, so that a frame has one name wherever it
//! is resolved:
//! - the agent, when it resolves its own process's addresses (in-process
//!   symbolization, and `LeakCheck`);
//! - the analyzer, when it resolves addresses an agent sent without names,
//!   from the debug file of the object's build-id, once for a whole fleet.
//!
//! Addresses here are **file addresses**: the object's own virtual
//! addresses, before any load bias. A return address is resolved at the
//! byte before it (the call), which the caller subtracts.

mod debug_only;
pub mod dwarf;
mod elf;

pub use debug_only::DebugOnly;
pub use elf::{build_id, load_segments, text_address, Functions, Segment};

use heaptide_wire::pprof::Frame;

/// The frames at each of `probes` (file addresses in the object at
/// `path`), innermost first, in the order given: the functions DWARF says
/// were inlined there (with `lines`), then the function the symbol table
/// names, at the call site DWARF gives for it. An address no symbol covers
/// ends in a frame with an empty name, which the caller names.
///
/// `index` is the object's DWARF unit index, kept by the caller between
/// calls so that later passes parse only the units they need.
pub fn resolve(
    path: &str,
    probes: &[u64],
    lines: bool,
    index: &mut dwarf::UnitIndex,
) -> Vec<Vec<Frame>> {
    let mut frames: Vec<Vec<Frame>> = probes.iter().map(|_| vec![Frame::new("", "", 0)]).collect();
    if let Some(functions) = Functions::read(path) {
        for (f, &p) in frames.iter_mut().zip(probes) {
            if let Some(name) = functions.name(p) {
                f[0].function = demangle(name).into();
            }
        }
    }
    if lines {
        let found = dwarf::frames(path, probes, index);
        for (f, inlined) in frames.iter_mut().zip(found) {
            *f = with_inlined(f.pop(), inlined);
        }
    }
    frames
}

/// The frames at one address: the functions DWARF says were inlined there
/// (innermost first, each named by its module by [`dwarf`]) and then
/// `outer`, the function the symbol table names, at the call site DWARF
/// gives for it.
fn with_inlined(outer: Option<Frame>, inlined: Vec<dwarf::DwarfFrame>) -> Vec<Frame> {
    let Some(mut outer) = outer else {
        return Vec::new();
    };
    let Some((last, inner)) = inlined.split_last() else {
        return vec![outer];
    };
    let mut out: Vec<Frame> = inner
        .iter()
        .map(|d| {
            // Named and qualified by the DWARF walk, which knows the unit's
            // directory.
            let name = d.function.as_deref().unwrap_or("?");
            Frame::new(name, d.file.as_str(), d.line)
        })
        .collect();
    outer.file = last.file.as_str().into();
    outer.line = last.line;
    out.push(outer);
    out
}

/// A symbol's name as people read it: Rust's without its hash, C++'s
/// without parameters or return type (as perf and pprof show them), C's
/// as it is.
pub fn demangle(name: &str) -> String {
    if let Ok(rust) = rustc_demangle::try_demangle(name) {
        return format!("{rust:#}");
    }
    if name.starts_with("_Z") {
        let options = cpp_demangle::DemangleOptions::new()
            .no_params()
            .no_return_type();
        if let Some(cpp) = cpp_demangle::Symbol::new(name)
            .ok()
            .and_then(|s| s.demangle_with_options(&options).ok())
        {
            return cpp;
        }
    }
    name.to_owned()
}

/// Whether a function is part of jemalloc's sampling path, which every
/// sampled stack starts with, or an address nothing named.
pub fn is_allocator_internal(name: &str) -> bool {
    name.starts_with("_rjem_")
        || name.starts_with("je_")
        || name.starts_with("prof_")
        || name.starts_with("imalloc")
        || name == "do_rallocx"
        || name.starts_with("0x")
}

/// How many of a stack's leading addresses are jemalloc's own, given each
/// address's frames (leaf first): an address is jemalloc's when the
/// function it is in is, whatever was inlined there. At least one address
/// is always left.
pub fn allocator_frames<F: AsRef<[Frame]>>(resolved: &[F]) -> usize {
    resolved
        .iter()
        .take_while(|f| {
            f.as_ref()
                .last()
                .is_some_and(|f| is_allocator_internal(&f.function))
        })
        .count()
        .min(resolved.len().saturating_sub(1))
}

/// The name of the one frame of a sampled stack that could not be
/// unwound, as flamegraphs and sites show it.
pub const NOT_UNWOUND: &str = "[stack not unwound]";

#[cfg(test)]
mod testing {
    /// This test binary's load bias: the base its first object was
    /// loaded at, since a PIE's first segment has address 0.
    pub fn own_bias() -> u64 {
        let mut info: libc::Dl_info = empty_info();
        let here = own_bias as *const libc::c_void;
        // SAFETY: `here` is an address of this executable and `info` a
        // valid place for dladdr to write.
        let found = unsafe { libc::dladdr(here, &mut info) };
        assert_ne!(found, 0);
        info.dli_fbase as u64
    }

    fn empty_info() -> libc::Dl_info {
        libc::Dl_info {
            dli_fname: std::ptr::null(),
            dli_fbase: std::ptr::null_mut(),
            dli_sname: std::ptr::null(),
            dli_saddr: std::ptr::null_mut(),
        }
    }
}
