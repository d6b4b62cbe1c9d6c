//! The objects loaded into this process (the executable, libc, every
//! shared library) and their functions, so that an address is named from
//! the object that holds it, by a function whose range covers it: never by
//! a data symbol, and never by the nearest symbol of another object.

use std::ffi::CStr;

/// One loaded object: where its file is, its load bias, and the address
/// ranges of its loadable segments.
pub(crate) struct Loaded {
    pub path: String,
    pub bias: u64,
    ranges: Vec<(u64, u64)>,
    /// Executable segments: (start, end, file offset).
    pub text: Vec<(u64, u64, u64)>,
    /// The GNU build-id, from the object's notes in memory.
    pub build_id: Option<Vec<u8>>,
}

impl Loaded {
    pub fn contains(&self, addr: u64) -> bool {
        self.ranges
            .iter()
            .any(|(lo, hi)| (*lo..*hi).contains(&addr))
    }
}

/// Every object the dynamic loader has mapped, the executable first.
/// Objects without a file (the vDSO) are left out.
pub(crate) fn loaded() -> Vec<Loaded> {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid `info` for the duration of
        // the callback, and `data` is the `Vec<Loaded>` handed in below.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<Loaded>)) };
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null `dlpi_name` is a NUL-terminated string the
            // loader keeps for the object's lifetime.
            unsafe { CStr::from_ptr(info.dlpi_name) }
                .to_string_lossy()
                .into_owned()
        };
        let path = match name.as_str() {
            "" if out.is_empty() => std::env::current_exe()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/proc/self/exe".to_owned()),
            n if n.starts_with('/') => name,
            _ => return 0,
        };
        let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: `dlpi_phdr` points at `dlpi_phnum` program headers,
            // valid for the duration of the callback.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let ranges = phdrs
            .iter()
            .filter(|p| p.p_type == libc::PT_LOAD)
            .map(|p| {
                let lo = info.dlpi_addr.wrapping_add(p.p_vaddr);
                (lo, lo.wrapping_add(p.p_memsz))
            })
            .collect();
        let text = phdrs
            .iter()
            .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_X != 0)
            .map(|p| {
                let lo = info.dlpi_addr.wrapping_add(p.p_vaddr);
                (lo, lo.wrapping_add(p.p_memsz), p.p_offset)
            })
            .collect();
        let build_id = phdrs
            .iter()
            .filter(|p| p.p_type == libc::PT_NOTE)
            .find_map(|p| {
                let start = info.dlpi_addr.wrapping_add(p.p_vaddr) as *const u8;
                // SAFETY: a PT_NOTE segment lies inside a loaded segment of
                // this object, mapped readable for as long as the object
                // is loaded, which covers this callback.
                let notes = unsafe { std::slice::from_raw_parts(start, p.p_memsz as usize) };
                gnu_build_id(notes, p.p_align)
            });
        out.push(Loaded {
            path,
            bias: info.dlpi_addr,
            ranges,
            text,
            build_id,
        });
        0
    }
    let mut out: Vec<Loaded> = Vec::new();
    // SAFETY: `each` matches the callback signature and only writes
    // through `data`, which points at `out` for the whole call.
    unsafe {
        libc::dl_iterate_phdr(
            Some(each),
            &mut out as *mut Vec<Loaded> as *mut libc::c_void,
        );
    }
    out
}

/// The `NT_GNU_BUILD_ID` note among `notes`, a PT_NOTE segment.
fn gnu_build_id(notes: &[u8], align: u64) -> Option<Vec<u8>> {
    use object::elf::{FileHeader64, NT_GNU_BUILD_ID};
    use object::read::elf::NoteIterator;
    let mut it =
        NoteIterator::<FileHeader64<object::NativeEndian>>::new(object::NativeEndian, align, notes)
            .ok()?;
    while let Ok(Some(note)) = it.next() {
        if note.name() == b"GNU" && note.n_type(object::NativeEndian) == NT_GNU_BUILD_ID {
            return Some(note.desc().to_vec());
        }
    }
    None
}

/// The build-ids of every loaded object that has one, in lower-case hex.
pub(crate) fn build_ids() -> Vec<String> {
    let mut ids: Vec<String> = loaded()
        .iter()
        .filter_map(|o| o.build_id.as_deref().map(hex))
        .collect();
    ids.dedup();
    ids.truncate(heaptide_wire::bounded::MAX_UNNAMED_OBJECTS);
    ids
}

/// Bytes in lower-case hex, as build-ids are written.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("{x:02x}")).collect()
}

/// The executable mappings of every loaded object, for profiles that
/// carry addresses.
pub(crate) fn mappings(objects: &[Loaded]) -> Vec<heaptide_wire::pprof::ObjectMapping> {
    objects
        .iter()
        .flat_map(|o| {
            o.text
                .iter()
                .map(|&(lo, hi, offset)| heaptide_wire::pprof::ObjectMapping {
                    memory_start: lo,
                    memory_limit: hi,
                    file_offset: offset,
                    file: o.path.clone(),
                    build_id: o.build_id.as_deref().map(hex).unwrap_or_default(),
                })
        })
        .collect()
}
