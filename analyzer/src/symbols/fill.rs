//! Naming a pprof profile's unnamed locations: each location with no
//! lines, in a mapping with a build-id, gets the frames its build-id's
//! debug file gives at its address, as pprof lines (innermost first,
//! which is pprof's order for inlined calls). Then each sample loses the
//! leading locations that are jemalloc's own sampling path, which an agent
//! that names its own frames drops before sending.

use std::collections::HashMap;

use heaptide_wire::pprof::{Frame, Function, Line, Profile};

/// One address to name: the build-id of its object, the file offset of
/// its mapping, and how far into the mapping it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Unnamed {
    pub build_id: String,
    pub mapping_offset: u64,
    pub delta: u64,
}

/// The profile's unnamed locations that could be named, by location id.
pub fn unnamed(profile: &Profile) -> Vec<(u64, Unnamed)> {
    let text = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| profile.string_table.get(i))
            .map_or("", String::as_str)
    };
    let mappings: HashMap<u64, _> = profile.mapping.iter().map(|m| (m.id, m)).collect();
    profile
        .location
        .iter()
        .filter(|l| l.line.is_empty())
        .filter_map(|l| {
            let m = mappings.get(&l.mapping_id)?;
            let build_id = text(m.build_id);
            let inside = (m.memory_start..m.memory_limit).contains(&l.address);
            (inside && is_build_id(build_id)).then(|| {
                (
                    l.id,
                    Unnamed {
                        build_id: build_id.to_owned(),
                        mapping_offset: m.file_offset,
                        delta: l.address - m.memory_start,
                    },
                )
            })
        })
        .collect()
}

/// A build-id as a file name may hold it: 4 to 64 hex digits.
pub fn is_build_id(id: &str) -> bool {
    (4..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Gives each location of `named` its frames, and drops jemalloc's own
/// leading locations from every sample that starts with them. Returns how
/// many locations were named.
pub fn apply(profile: &mut Profile, named: &HashMap<u64, std::sync::Arc<[Frame]>>) -> usize {
    let mut strings: HashMap<String, i64> = profile
        .string_table
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as i64))
        .collect();
    let mut string = |p: &mut Profile, s: &str| -> i64 {
        *strings.entry(s.to_owned()).or_insert_with(|| {
            p.string_table.push(s.to_owned());
            p.string_table.len() as i64 - 1
        })
    };
    let mut functions: HashMap<(i64, i64), u64> = profile
        .function
        .iter()
        .map(|f| ((f.name, f.filename), f.id))
        .collect();
    let mut next_function = profile.function.iter().map(|f| f.id).max().unwrap_or(0) + 1;
    let mut count = 0;
    let mut internal: std::collections::HashSet<u64> = Default::default();
    for i in 0..profile.location.len() {
        let Some(frames) = named.get(&profile.location[i].id) else {
            continue;
        };
        let mut lines = Vec::with_capacity(frames.len());
        for f in frames.iter() {
            let key = (string(profile, &f.function), string(profile, &f.file));
            let id = *functions.entry(key).or_insert_with(|| {
                profile.function.push(Function {
                    id: next_function,
                    name: key.0,
                    system_name: key.0,
                    filename: key.1,
                    start_line: 0,
                });
                next_function += 1;
                next_function - 1
            });
            lines.push(Line {
                function_id: id,
                line: i64::from(f.line),
            });
        }
        if frames
            .last()
            .is_some_and(|f| heaptide_symbols::is_allocator_internal(&f.function))
        {
            internal.insert(profile.location[i].id);
        }
        profile.location[i].line = lines;
        count += 1;
    }
    for s in &mut profile.sample {
        let lead = s
            .location_id
            .iter()
            .take_while(|id| internal.contains(id))
            .count()
            .min(s.location_id.len().saturating_sub(1));
        s.location_id.drain(..lead);
    }
    for m in &mut profile.mapping {
        m.has_functions |= count > 0;
    }
    count
}
