//! An object file's function symbols and loadable segments.

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

/// Maps the file at `path` read-only.
fn map(path: &str) -> Option<memmap2::Mmap> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: a mapped file must not change while it is read. The agent
    // maps objects its own process has loaded: the kernel refuses writes
    // to a running executable (ETXTBSY), and a library replaced on disk is
    // a new file. The analyzer maps only the debug files of its own cache,
    // each written once under a temporary name and renamed into place.
    unsafe { memmap2::Mmap::map(&file) }.ok()
}

/// The function symbols of one object file, by address, with sizes.
pub struct Functions(Vec<(u64, u64, String)>);

impl Functions {
    /// Reads the symbol table (and the dynamic one, which is all a
    /// stripped library keeps) of the file at `path`.
    pub fn read(path: &str) -> Option<Functions> {
        let map = map(path)?;
        let obj = object::File::parse(&*map).ok()?;
        let mut syms: Vec<(u64, u64, String)> = obj
            .symbols()
            .chain(obj.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_owned())))
            .collect();
        syms.sort_unstable_by_key(|(a, size, _)| (*a, std::cmp::Reverse(*size)));
        syms.dedup_by_key(|(a, _, _)| *a);
        Some(Functions(syms))
    }

    /// The function whose range holds `addr` (a file address). A symbol
    /// without a size is trusted up to the next symbol.
    pub fn name(&self, addr: u64) -> Option<&str> {
        let i = self
            .0
            .partition_point(|(a, _, _)| *a <= addr)
            .checked_sub(1)?;
        let (start, size, name) = &self.0[i];
        (*size == 0 || addr < start + size).then_some(name.as_str())
    }
}

/// One loadable segment of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub file_offset: u64,
    pub file_size: u64,
    pub address: u64,
    pub align: u64,
    pub executable: bool,
}

/// The loadable segments of the object at `path`; `None` when the file is
/// not an object.
pub fn load_segments(path: &str) -> Option<Vec<Segment>> {
    let map = map(path)?;
    let obj = object::File::parse(&*map).ok()?;
    Some(
        obj.segments()
            .map(|s| {
                let (file_offset, file_size) = s.file_range();
                // PF_X, bit 0 of `p_flags`.
                let executable = matches!(
                    s.flags(),
                    object::SegmentFlags::Elf { p_flags, .. } if p_flags.0 & 1 != 0
                );
                Segment {
                    file_offset,
                    file_size,
                    address: s.address(),
                    align: s.align().max(1),
                    executable,
                }
            })
            .collect(),
    )
}

/// The file address `delta` bytes into the executable mapping that
/// starts at `file_offset` of the object's file (as a pprof mapping says),
/// given the segments of the object or of its separate debug file.
///
/// Mappings come in two styles: heaptide's agent gives each executable
/// segment's own offset and start, and `/proc/<pid>/maps` (which
/// `jemalloc_pprof` and Go copy) the page-aligned ones. Either way
/// `file_offset + delta` is where the address's byte is in the file: in
/// the object itself, the segment holding that byte places it. A debug
/// file (`objcopy --only-keep-debug`) keeps each segment's address but not
/// its file offset, and its code segment holds no bytes; there the
/// executable segment is the one congruent with the mapping (as the ELF
/// loader requires), and a page-aligned mapping starts at its page.
pub fn text_address(segments: &[Segment], file_offset: u64, delta: u64) -> Option<u64> {
    const PAGE: u64 = 4096;
    let at = file_offset.checked_add(delta)?;
    let holding = segments.iter().find(|s| {
        s.executable
            && s.file_size > 0
            && (s.file_offset..s.file_offset + s.file_size).contains(&at)
    });
    if let Some(s) = holding {
        return Some(at - s.file_offset + s.address);
    }
    let code = segments.iter().filter(|s| s.executable);
    if let Some(s) = code
        .clone()
        .filter(|s| s.address % s.align == file_offset % s.align)
        .min_by_key(|s| s.address.abs_diff(file_offset))
    {
        return Some(s.address + delta);
    }
    let paged = file_offset.is_multiple_of(PAGE);
    code.filter(|_| paged)
        .min_by_key(|s| s.address.abs_diff(file_offset))
        .map(|s| s.address / PAGE * PAGE + delta)
}

/// The GNU build-id of the object at `path`, in lower-case hex. The file
/// is read, not mapped: it may be any file of a directory being searched.
pub fn build_id(path: &str) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let cache = object::ReadCache::new(file);
    let obj = object::File::parse(&cache).ok()?;
    let id = obj.build_id().ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(file_offset: u64, file_size: u64, address: u64, executable: bool) -> Segment {
        Segment {
            file_offset,
            file_size,
            address,
            align: 4096,
            executable,
        }
    }

    /// The example service's layout as lld links it: code at offset
    /// 0x3e7c00, address 0x3e8c00; and as its debug file keeps it.
    #[test]
    fn both_mapping_styles_find_the_address_in_the_binary_and_its_debug_file() {
        let binary = [
            seg(0, 0x3e7bec, 0, false),
            seg(0x3e7c00, 0xb69fb0, 0x3e8c00, true),
        ];
        let debug = [seg(0, 0x340, 0, false), seg(0xc00, 0, 0x3e8c00, true)];
        // The byte at file offset 0x400000 is at address 0x401000.
        let want = Some(0x401000);
        for segments in [&binary[..], &debug[..]] {
            // The agent's mapping: the segment's own offset and start.
            assert_eq!(text_address(segments, 0x3e7c00, 0x400000 - 0x3e7c00), want);
            // /proc/<pid>/maps': page-aligned offset and start.
            assert_eq!(text_address(segments, 0x3e7000, 0x400000 - 0x3e7000), want);
        }
    }
}
