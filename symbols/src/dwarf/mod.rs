//! `file:line` and inlined frames from an object's DWARF, within a memory
//! bound.
//!
//! A general DWARF context (`addr2line`'s) parses the header of every
//! compilation unit up front, line tables' file lists included: 23 MiB for
//! the example service, whatever the addresses asked about. Here units are
//! visited one at a time. The first pass over an object notes where each
//! unit lies (`UnitIndex`); after that only the units the addresses fall
//! in are parsed, each walked once, depth first, for the inlined calls
//! that hold each address, and its line table once for where each
//! address is. Functions inlined from another unit
//! (ThinLTO inlines across the units of a crate) are named by reading that
//! one entry there. The mapped file's pages are handed back to the kernel
//! after each unit (`MADV_DONTNEED`: the file stays in the page cache, not
//! in this process). Hand-written over `gimli` because `addr2line` has no
//! such bound and no other maintained crate offers one.
//!
//! DWARF names inlined functions without their module path (and, in
//! `line-tables-only` builds, with no linkage name to recover it), so an
//! inlined frame is named from the file its code is in:
//! `library/alloc/src/raw_vec/mod.rs` makes `with_capacity_in` into
//! `alloc::raw_vec::with_capacity_in`, which is what tells the standard
//! library's frames from the application's.

use std::collections::HashMap;

use gimli::AttributeValue;

mod names;

use names::qualified;

/// One frame at an address: the function's name as DWARF has it (short,
/// for inlined code) and where in it the address is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DwarfFrame {
    pub function: Option<String>,
    pub file: String,
    pub line: u32,
}

type Reader<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;

/// Where each compilation unit of one object lies: the span of addresses
/// its ranges cover and its offset in `.debug_info`. Built on the first
/// pass over an object, it lets later passes parse only the units their
/// addresses fall in; a few dozen bytes a unit.
#[derive(Default)]
pub struct UnitIndex {
    built: bool,
    units: Vec<(u64, u64, usize)>,
}

impl UnitIndex {
    fn build(&mut self, dwarf: &gimli::Dwarf<Reader<'_>>) {
        let mut headers = dwarf.units();
        while let Ok(Some(header)) = headers.next() {
            let (Some(offset), Ok(unit)) = (header.debug_info_offset(), dwarf.unit(header)) else {
                continue;
            };
            let Ok(mut ranges) = dwarf.unit_ranges(&unit) else {
                continue;
            };
            let (mut lo, mut hi) = (u64::MAX, 0);
            while let Ok(Some(r)) = ranges.next() {
                lo = lo.min(r.begin);
                hi = hi.max(r.end);
            }
            if lo < hi {
                self.units.push((lo, hi, offset.0));
            }
        }
        self.built = true;
    }

    /// Offsets of the units whose span holds one of `sorted`.
    fn candidates(&self, sorted: &[u64]) -> Vec<usize> {
        self.units
            .iter()
            .filter(|(lo, hi, _)| {
                let from = sorted.partition_point(|a| a < lo);
                sorted.get(from).is_some_and(|a| a < hi)
            })
            .map(|u| u.2)
            .collect()
    }
}

/// The frames at each of `probes` (file addresses), innermost first, in
/// the order given; an empty list where DWARF knows nothing. `index` is
/// the object's unit index, built here on first use.
pub fn frames(path: &str, probes: &[u64], index: &mut UnitIndex) -> Vec<Vec<DwarfFrame>> {
    let mut out = vec![Vec::new(); probes.len()];
    let Ok(file) = std::fs::File::open(path) else {
        return out;
    };
    // SAFETY: see `Functions::read`: callers hand only files that are not
    // modified in place while mapped.
    let Ok(map) = (unsafe { memmap2::Mmap::map(&file) }) else {
        return out;
    };
    let Some(dwarf) = load(&map) else {
        return out;
    };
    if !index.built {
        index.build(&dwarf);
    }
    let mut order: Vec<usize> = (0..probes.len()).collect();
    order.sort_unstable_by_key(|&i| probes[i]);
    let sorted: Vec<u64> = order.iter().map(|&i| probes[i]).collect();
    // Names of functions inlined across units, by their entry's offset.
    let mut names: HashMap<usize, Option<String>> = HashMap::new();
    for offset in index.candidates(&sorted) {
        // The unit's abbreviations and line-table header are parsed here
        // and dropped with `unit` before the next.
        let header = dwarf
            .debug_info
            .header_from_offset(gimli::DebugInfoOffset(offset));
        let Some(unit) = header.ok().and_then(|h| dwarf.unit(h).ok()) else {
            continue;
        };
        let mine = unit_probes(&dwarf, &unit, &sorted);
        if !mine.is_empty() {
            let probes: Vec<u64> = mine.iter().map(|&j| sorted[j]).collect();
            let mut walk = Walk::new(&dwarf, &unit, &mut names);
            for (k, frames) in walk.frames(&probes).into_iter().enumerate() {
                out[order[mine[k]]] = frames;
            }
        }
        // Hand the pages this unit read back; the next faults in only what
        // it needs.
        // SAFETY: the mapping is private and read-only, so dropping its
        // pages loses nothing: a later read faults the same bytes back in
        // from the file, which stays unmodified while loaded.
        let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
    }
    out
}

/// Indices into `sorted` of the probes inside `unit`.
fn unit_probes(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    sorted: &[u64],
) -> Vec<usize> {
    let mut mine = Vec::new();
    let Ok(mut ranges) = dwarf.unit_ranges(unit) else {
        return mine;
    };
    while let Ok(Some(r)) = ranges.next() {
        let from = sorted.partition_point(|&a| a < r.begin);
        mine.extend((from..sorted.len()).take_while(|&j| sorted[j] < r.end));
    }
    mine
}

/// The object's DWARF, borrowed from the mapping. Compressed sections
/// would have to be inflated whole, so an object with them gets none.
fn load(map: &memmap2::Mmap) -> Option<gimli::Dwarf<Reader<'_>>> {
    use object::{Object, ObjectSection};
    let obj = object::File::parse(&**map).ok()?;
    let endian = if obj.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let section = |id: gimli::SectionId| -> Result<Reader<'_>, ()> {
        let data = match obj.section_by_name(id.name()) {
            Some(s)
                if s.compressed_file_range()
                    .is_ok_and(|r| r.format != object::CompressionFormat::None) =>
            {
                return Err(())
            }
            Some(s) => s.data().map_err(|_| ())?,
            None => &[],
        };
        Ok(gimli::EndianSlice::new(data, endian))
    };
    let dwarf = gimli::Dwarf::load(section).ok()?;
    use gimli::Section;
    (!dwarf.debug_info.reader().is_empty()).then_some(dwarf)
}

/// One call inlined at an address: the inlined function's entry, where it
/// was called from, and how deep in the unit's tree it is.
struct Inlined<'a> {
    depth: isize,
    origin: Option<AttributeValue<Reader<'a>>>,
    call_file: u64,
    call_line: u32,
}

/// A walk over one unit.
struct Walk<'a, 'w> {
    dwarf: &'w gimli::Dwarf<Reader<'a>>,
    unit: &'w gimli::Unit<Reader<'a>>,
    names: &'w mut HashMap<usize, Option<String>>,
}

impl<'a, 'w> Walk<'a, 'w> {
    fn new(
        dwarf: &'w gimli::Dwarf<Reader<'a>>,
        unit: &'w gimli::Unit<Reader<'a>>,
        names: &'w mut HashMap<usize, Option<String>>,
    ) -> Self {
        Walk { dwarf, unit, names }
    }

    /// The frames at each of `probes`, innermost first; the last is the
    /// function the code is in, left unnamed for the symbol table.
    fn frames(&mut self, probes: &[u64]) -> Vec<Vec<DwarfFrame>> {
        let mut order: Vec<usize> = (0..probes.len()).collect();
        order.sort_unstable_by_key(|&i| probes[i]);
        let sorted: Vec<u64> = order.iter().map(|&i| probes[i]).collect();
        let chains = self.chains(&sorted);
        let rows = self.rows(&sorted);
        let mut out = vec![Vec::new(); probes.len()];
        for (k, (chain, row)) in chains.into_iter().zip(rows).enumerate() {
            let Some(mut here) = row else { continue };
            let mut frames = Vec::with_capacity(chain.len() + 1);
            for call in chain.iter().rev() {
                // Named here, where the unit's directory can complete a
                // relative path into the crate's own.
                let module_file = self.absolute(&here.0);
                frames.push(DwarfFrame {
                    function: Some(qualified(
                        self.name(call.origin).as_deref().unwrap_or("?"),
                        &module_file,
                    )),
                    file: here.0,
                    line: here.1,
                });
                here = (self.file_name(call.call_file), call.call_line);
            }
            frames.push(DwarfFrame {
                function: None,
                file: here.0,
                line: here.1,
            });
            out[order[k]] = frames;
        }
        out
    }

    /// For each of `sorted`, the calls inlined there, outermost first.
    fn chains(&self, sorted: &[u64]) -> Vec<Vec<Inlined<'a>>> {
        let mut chains: Vec<Vec<Inlined>> = (0..sorted.len()).map(|_| Vec::new()).collect();
        let mut cursor = self.unit.entries();
        while let Ok(Some(entry)) = cursor.next_dfs() {
            if entry.tag() != gimli::DW_TAG_inlined_subroutine {
                continue;
            }
            let Ok(mut ranges) = self.dwarf.die_ranges(self.unit, entry) else {
                continue;
            };
            let depth = entry.depth();
            while let Ok(Some(r)) = ranges.next() {
                let from = sorted.partition_point(|&a| a < r.begin);
                for chain in chains[from..]
                    .iter_mut()
                    .zip(&sorted[from..])
                    .take_while(|(_, &a)| a < r.end)
                    .map(|(c, _)| c)
                {
                    // Deeper entries nest in the shallower ones kept.
                    chain.retain(|c| c.depth < depth);
                    chain.push(Inlined {
                        depth,
                        origin: entry.attr_value(gimli::DW_AT_abstract_origin),
                        call_file: udata(entry.attr_value(gimli::DW_AT_call_file)),
                        call_line: udata(entry.attr_value(gimli::DW_AT_call_line)) as u32,
                    });
                }
            }
        }
        chains
    }

    /// For each of `sorted`, the line-table row that covers it.
    fn rows(&self, sorted: &[u64]) -> Vec<Option<(String, u32)>> {
        let mut found: Vec<Option<(u64, u32)>> = vec![None; sorted.len()];
        if let Some(program) = self.unit.line_program.clone() {
            let mut rows = program.rows();
            let mut prev: Option<(u64, u64, u32)> = None;
            while let Ok(Some((_, row))) = rows.next_row() {
                let addr = row.address();
                if let Some((start, file, line)) = prev.filter(|p| p.0 < addr) {
                    let from = sorted.partition_point(|&a| a < start);
                    let to = sorted.partition_point(|&a| a < addr);
                    found[from..to].fill(Some((file, line)));
                }
                prev = (!row.end_sequence()).then(|| {
                    let line = row.line().map_or(0, |l| l.get() as u32);
                    (addr, row.file_index(), line)
                });
            }
        }
        found
            .into_iter()
            .map(|f| f.map(|(file, line)| (self.file_name(file), line)))
            .collect()
    }

    /// `file` under the unit's compilation directory when it is relative
    /// (a registry crate's `src/task/coop/mod.rs`, the standard library's
    /// `library/core/src/...`), for naming its module only: the path shown
    /// stays as the line table gives it, which names no build machine.
    fn absolute(&self, file: &str) -> String {
        let dir = self
            .unit
            .comp_dir
            .as_ref()
            .map(|d| d.to_string_lossy().into_owned());
        match dir {
            Some(d) if !file.starts_with('/') && !file.is_empty() => {
                format!("{}/{file}", d.trim_end_matches('/'))
            }
            _ => file.to_owned(),
        }
    }

    /// The path of file `index` of this unit's line table.
    fn file_name(&self, index: u64) -> String {
        let Some(program) = &self.unit.line_program else {
            return String::new();
        };
        let header = program.header();
        let Some(file) = header.file(index) else {
            return String::new();
        };
        let text = |v| {
            self.dwarf
                .attr_string(self.unit, v)
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let name = text(file.path_name());
        if name.starts_with('/') {
            return name;
        }
        let dir = file.directory(header).map(text).unwrap_or_default();
        if dir.is_empty() {
            name
        } else {
            format!("{}/{name}", dir.trim_end_matches('/'))
        }
    }

    /// The name of the function an inlined call's `abstract_origin` names,
    /// in this unit or another.
    fn name(&mut self, origin: Option<AttributeValue<Reader<'a>>>) -> Option<String> {
        match origin? {
            AttributeValue::UnitRef(at) => {
                let entry = self.unit.entry(at).ok()?;
                entry_name(self.dwarf, self.unit, &entry, 0)
            }
            AttributeValue::DebugInfoRef(at) => {
                if let Some(name) = self.names.get(&at.0) {
                    return name.clone();
                }
                let name = name_elsewhere(self.dwarf, at);
                self.names.insert(at.0, name.clone());
                name
            }
            _ => None,
        }
    }
}

/// The name of the entry at `at` in whichever unit holds it.
fn name_elsewhere(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    at: gimli::DebugInfoOffset<usize>,
) -> Option<String> {
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Some(start) = header.debug_info_offset() else {
            continue;
        };
        if !(start.0..start.0 + header.length_including_self()).contains(&at.0) {
            continue;
        }
        let offset = at.to_unit_offset(&header)?;
        let unit = dwarf.unit(header).ok()?;
        let entry = unit.entry(offset).ok()?;
        return entry_name(dwarf, &unit, &entry, 0);
    }
    None
}

/// An entry's name: its linkage name demangled when it has one (the full
/// path), else its name, else the name of the entry it refines.
fn entry_name(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &gimli::Unit<Reader<'_>>,
    entry: &gimli::DebuggingInformationEntry<Reader<'_>>,
    depth: usize,
) -> Option<String> {
    let text = |v| {
        dwarf
            .attr_string(unit, v)
            .ok()
            .map(|s| s.to_string_lossy().into_owned())
    };
    for attr in [gimli::DW_AT_linkage_name, gimli::DW_AT_MIPS_linkage_name] {
        if let Some(name) = entry.attr_value(attr).and_then(text) {
            return Some(crate::demangle(&name));
        }
    }
    if let Some(name) = entry.attr_value(gimli::DW_AT_name).and_then(text) {
        return Some(name);
    }
    let refined = entry
        .attr_value(gimli::DW_AT_abstract_origin)
        .or_else(|| entry.attr_value(gimli::DW_AT_specification))?;
    match refined {
        AttributeValue::UnitRef(at) if depth < 4 => {
            entry_name(dwarf, unit, &unit.entry(at).ok()?, depth + 1)
        }
        AttributeValue::DebugInfoRef(at) if depth < 4 => name_elsewhere(dwarf, at),
        _ => None,
    }
}

fn udata(v: Option<AttributeValue<Reader<'_>>>) -> u64 {
    match v {
        Some(AttributeValue::FileIndex(n)) | Some(AttributeValue::Udata(n)) => n,
        Some(AttributeValue::Data1(n)) => u64::from(n),
        Some(AttributeValue::Data2(n)) => u64::from(n),
        Some(AttributeValue::Data4(n)) => u64::from(n),
        Some(AttributeValue::Sdata(n)) => n.max(0) as u64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A later pass over an object parses only the units its addresses
    /// fall in, and finds what a first pass finds.
    #[test]
    fn the_unit_index_finds_what_a_full_pass_finds() {
        let exe = std::env::current_exe().unwrap();
        let path = exe.to_str().unwrap();
        let here = the_unit_index_finds_what_a_full_pass_finds as *const () as u64;
        let bias = crate::testing::own_bias();
        let probes: Vec<u64> = [here, here + 8, qualified as *const () as u64]
            .iter()
            .map(|a| a - bias)
            .collect();
        let mut index = UnitIndex::default();
        let first = frames(path, &probes, &mut index);
        assert!(index.built && !index.units.is_empty());
        assert!(first.iter().all(|f| !f.is_empty()), "{first:?}");
        assert_eq!(frames(path, &probes, &mut index), first);
        let candidates = index.candidates(&[probes[0]]);
        assert!(candidates.len() < index.units.len() / 2, "{candidates:?}");
    }
}
