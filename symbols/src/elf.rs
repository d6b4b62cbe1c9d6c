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

/// The loadable segments of the object at `path`: (file offset, virtual
/// address, size in the file), to turn an offset in a mapping into a file
/// address. `None` when the file is not an object.
pub fn load_segments(path: &str) -> Option<Vec<(u64, u64, u64)>> {
    let map = map(path)?;
    let obj = object::File::parse(&*map).ok()?;
    Some(
        obj.segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, s.address(), size)
            })
            .collect(),
    )
}
