//! An object file without its code and data: what names its addresses,
//! streamed from the object on disk.
//!
//! The analyzer names addresses from an object's symbol tables, its DWARF
//! and its program headers (which place a mapping's file offset at an
//! address); it never reads the code itself. So an agent uploading its
//! executable sends what `objcopy --only-keep-debug` would keep, without
//! writing a file: the ELF header, the program headers as they are, the
//! sections that are not loaded (`.symtab`, `.strtab`, `.debug_*`), the
//! notes (the build-id) and the dynamic symbols, and a section table in
//! which every other section holds no bytes (`SHT_NOBITS`). The bytes are
//! read from the object as they are sent; only the headers are held.
//!
//! Hand-written because `object`'s writer builds the whole file in memory,
//! which is what the agent must not do; the layout is ELF's own and small.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use object::elf::{FileHeader64, SectionHeader64, SHF_ALLOC, SHT_DYNSYM, SHT_NOBITS, SHT_NOTE};
use object::elf::{ELFCLASS64, ELFDATA2LSB, SHT_NULL, SHT_STRTAB};
use object::pod::{bytes_of, bytes_of_slice, from_bytes, slice_from_bytes};
use object::LittleEndian as LE;

/// One run of the stream: bytes held, or a range of the object file.
enum Part {
    Held(Vec<u8>),
    Copied { offset: u64, len: u64 },
}

/// The debug-only form of an object file, readable as a stream.
pub struct DebugOnly {
    file: File,
    parts: Vec<Part>,
    /// The part being read and how far into it.
    at: (usize, u64),
    len: u64,
}

impl DebugOnly {
    /// The debug-only form of the object at `path`, or `None` when it is
    /// not a 64-bit little-endian ELF file with a plain section table (the
    /// caller then sends the whole file).
    pub fn open(path: &str) -> Option<DebugOnly> {
        let file = File::open(path).ok()?;
        let file_len = file.metadata().ok()?.len();
        let head = read_at(&file, 0, size_of::<FileHeader64<LE>>() as u64)?;
        let (header, _) = from_bytes::<FileHeader64<LE>>(&head).ok()?;
        let ident = &header.e_ident;
        let elf64_le = ident.magic == object::elf::ELFMAG
            && ident.class == ELFCLASS64
            && ident.data == ELFDATA2LSB;
        let shnum = u64::from(header.e_shnum.get(LE));
        let shentsize = u64::from(header.e_shentsize.get(LE));
        let phentsize = u64::from(header.e_phentsize.get(LE));
        // A section table of 0 entries or an index at SHN_LORESERVE and
        // above uses ELF's extended numbering, which this does not write.
        if !elf64_le
            || shnum == 0
            || header.e_shstrndx.get(LE).0 >= 0xff00
            || shentsize != size_of::<SectionHeader64<LE>>() as u64
            || phentsize != size_of::<object::elf::ProgramHeader64<LE>>() as u64
        {
            return None;
        }
        let phnum = u64::from(header.e_phnum.get(LE));
        let programs = read_at(&file, header.e_phoff.get(LE), phnum * phentsize)?;
        let table = read_at(&file, header.e_shoff.get(LE), shnum * shentsize)?;
        let (sections, _) = slice_from_bytes::<SectionHeader64<LE>>(&table, shnum as usize).ok()?;
        let mut sections = sections.to_vec();

        let mut out = DebugOnly {
            file,
            parts: Vec::new(),
            at: (0, 0),
            len: 0,
        };
        let mut header = *header;
        header
            .e_phoff
            .set(LE, if phnum == 0 { 0 } else { head.len() as u64 });
        out.push(Part::Held(head));
        out.push(Part::Held(programs));
        for s in &mut sections {
            out.place(s, file_len)?;
        }
        out.pad_to(8);
        header.e_shoff.set(LE, out.len);
        out.push(Part::Held(bytes_of_slice(&sections).to_vec()));
        out.parts[0] = Part::Held(bytes_of(&header).to_vec());
        Some(out)
    }

    /// The stream's length in bytes, for `Content-Length`.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the stream is empty; never, for an object.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Places one section: its bytes copied at its alignment when it is
    /// kept, none when it is left out. `None` when its bytes lie outside
    /// the file.
    fn place(&mut self, s: &mut SectionHeader64<LE>, file_len: u64) -> Option<()> {
        let kind = s.sh_type.get(LE).0;
        let (offset, size) = (s.sh_offset.get(LE), s.sh_size.get(LE));
        if kind == SHT_NULL.0 || kind == SHT_NOBITS.0 {
            return Some(());
        }
        if !kept(kind, s.sh_flags.get(LE).0) {
            s.sh_type.set(LE, SHT_NOBITS);
            s.sh_offset.set(LE, self.len);
            return Some(());
        }
        if offset.checked_add(size)? > file_len {
            return None;
        }
        self.pad_to(s.sh_addralign.get(LE).clamp(1, 4096));
        s.sh_offset.set(LE, self.len);
        self.push(Part::Copied { offset, len: size });
        Some(())
    }

    fn pad_to(&mut self, align: u64) {
        let pad = self.len.next_multiple_of(align) - self.len;
        if pad > 0 {
            self.push(Part::Held(vec![0; pad as usize]));
        }
    }

    fn push(&mut self, part: Part) {
        self.len += match &part {
            Part::Held(bytes) => bytes.len() as u64,
            Part::Copied { len, .. } => *len,
        };
        self.parts.push(part);
    }
}

/// Whether a section with this type and these flags is sent: what is not
/// loaded (symbols, strings, DWARF), notes (the build-id), and the dynamic
/// symbols and their strings, all that a stripped library names.
fn kept(kind: u32, flags: u64) -> bool {
    flags & SHF_ALLOC.0 == 0
        || [SHT_NOTE, SHT_DYNSYM, SHT_STRTAB]
            .iter()
            .any(|t| t.0 == kind)
}

fn read_at(file: &File, offset: u64, len: u64) -> Option<Vec<u8>> {
    // Headers only: a table larger than this is not an object's.
    if len > 16 << 20 {
        return None;
    }
    let mut buf = vec![0; len as usize];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

impl Read for DebugOnly {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let (i, done) = self.at;
            let Some(part) = self.parts.get(i) else {
                return Ok(0);
            };
            let n = match part {
                Part::Held(bytes) => {
                    let rest = &bytes[done as usize..];
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    n
                }
                Part::Copied { offset, len } => {
                    let want = (len - done).min(buf.len() as u64) as usize;
                    if want > 0 {
                        self.file.read_exact_at(&mut buf[..want], offset + done)?;
                    }
                    want
                }
            };
            if n == 0 && !buf.is_empty() {
                self.at = (i + 1, 0);
                continue;
            }
            self.at.1 += n as u64;
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The debug-only form of this test binary names its functions and
    /// lines as the binary does, carries its build-id and segments, and
    /// is smaller.
    #[test]
    fn the_debug_only_form_names_what_the_object_names() {
        let exe = std::env::current_exe().unwrap();
        let exe = exe.to_str().unwrap();
        let mut stream = DebugOnly::open(exe).expect("the test binary is ELF64");
        let declared = stream.len();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, declared);
        let written =
            std::env::temp_dir().join(format!("heaptide-debug-only-{}", std::process::id()));
        std::fs::write(&written, &bytes).unwrap();
        let copy = written.to_str().unwrap();

        assert_eq!(crate::build_id(copy), crate::build_id(exe));
        assert!(crate::build_id(copy).is_some());
        assert_eq!(crate::load_segments(copy), crate::load_segments(exe));
        let whole = std::fs::metadata(exe).unwrap().len();
        assert!(declared < whole, "{declared} bytes of {whole}");

        let here = the_debug_only_form_names_what_the_object_names as fn() as usize as u64;
        let probe = here - crate::testing::own_bias() + 4;
        let mut index = (
            crate::dwarf::UnitIndex::default(),
            crate::dwarf::UnitIndex::default(),
        );
        let from_copy = crate::resolve(copy, &[probe], true, &mut index.0);
        let from_exe = crate::resolve(exe, &[probe], true, &mut index.1);
        std::fs::remove_file(&written).unwrap();
        assert_eq!(from_copy, from_exe);
        let outer = from_copy[0].last().unwrap();
        assert!(
            outer
                .function
                .contains("the_debug_only_form_names_what_the_object_names"),
            "{from_copy:?}"
        );
        assert!(outer.line > 0, "{from_copy:?}");
    }

    #[test]
    fn a_file_that_is_not_an_object_has_no_debug_only_form() {
        assert!(DebugOnly::open("/proc/self/status").is_none());
        assert!(DebugOnly::open("/nonexistent").is_none());
    }
}
