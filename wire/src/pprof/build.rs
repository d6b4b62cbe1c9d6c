//! Heap profiles from symbolized stacks: names only, or (from a native
//! process) with each frame's address and the mapped object holding it,
//! build-id included, so that pprof tools can symbolize them again.

use std::collections::HashMap;

use super::{Frame, Function, Line, Location, Mapping, Profile, ProfileSample, Sample, ValueType};

/// The heap sample types heaptide writes, in order.
/// Go's heap profile layout, so that `-sample_index=alloc_space` and the
/// like work in pprof tools: allocations since the previous profile, then
/// live memory, which is the default.
pub const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

/// One executable mapping of a loaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMapping {
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    /// The object's path.
    pub file: String,
    /// The GNU build-id in lower-case hex; empty when the object has none.
    pub build_id: String,
}

/// Builds a heap profile from symbolized stacks.
pub fn build_heap_profile(stacks: &[ProfileSample], period: i64, time_nanos: i64) -> Profile {
    build(stacks, None, period, time_nanos)
}

/// Builds a heap profile whose locations carry addresses: `addresses[i]`
/// holds the return address of each frame of `stacks[i]`, and `mappings`
/// the objects they fall in. `lines` says whether frames carry `file:line`.
pub fn build_native_heap_profile(
    stacks: &[ProfileSample],
    addresses: &[Vec<u64>],
    mappings: &[ObjectMapping],
    lines: bool,
    period: i64,
    time_nanos: i64,
) -> Profile {
    build(
        stacks,
        Some((addresses, mappings, lines)),
        period,
        time_nanos,
    )
}

type Native<'a> = (&'a [Vec<u64>], &'a [ObjectMapping], bool);

fn build(stacks: &[ProfileSample], native: Option<Native>, period: i64, time: i64) -> Profile {
    let mut b = Builder::default();
    b.string(""); // pprof requires string 0 to be empty
    let mut profile = Profile {
        sample_type: SAMPLE_TYPES
            .iter()
            .map(|(t, u)| ValueType {
                r#type: b.string(t),
                unit: b.string(u),
            })
            .collect(),
        period_type: Some(ValueType {
            r#type: b.string("space"),
            unit: b.string("bytes"),
        }),
        period,
        time_nanos: time,
        ..Default::default()
    };
    profile.default_sample_type = profile.sample_type[3].r#type;
    if let Some((_, mappings, lines)) = native {
        profile.mapping = b.mappings(mappings, lines);
    }
    for (i, stack) in stacks.iter().enumerate() {
        let addrs = native.and_then(|(a, _, _)| a.get(i));
        let location_id = stack
            .frames
            .iter()
            .enumerate()
            .map(|(j, f)| {
                let addr = addrs.and_then(|a| a.get(j)).copied();
                b.location(f, addr, native.map_or(&[][..], |(_, m, _)| m))
            })
            .collect();
        profile.sample.push(Sample {
            location_id,
            value: vec![
                stack.alloc_objects,
                stack.alloc_bytes,
                stack.objects,
                stack.bytes,
            ],
        });
    }
    // A mapping has functions only if some location in it was named.
    for m in &mut profile.mapping {
        m.has_functions = b
            .locations
            .iter()
            .any(|l| l.mapping_id == m.id && !l.line.is_empty());
    }
    profile.string_table = b.strings;
    profile.function = b.functions;
    profile.location = b.locations;
    profile
}

#[derive(Default)]
struct Builder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: Vec<Function>,
    function_ids: HashMap<(i64, i64), u64>,
    locations: Vec<Location>,
    location_ids: HashMap<(Frame, u64), u64>,
}

impl Builder {
    /// The id of the function `frame` is in, added if new.
    fn function(&mut self, frame: &Frame) -> u64 {
        let name = self.string(&frame.function);
        let file = self.string(&frame.file);
        let next = self.functions.len() as u64 + 1;
        let id = *self.function_ids.entry((name, file)).or_insert(next);
        if id == next {
            self.functions.push(Function {
                id,
                name,
                system_name: name,
                filename: file,
                start_line: 0,
            });
        }
        id
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(id) = self.string_ids.get(s) {
            return *id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), id);
        id
    }

    fn mappings(&mut self, mappings: &[ObjectMapping], lines: bool) -> Vec<Mapping> {
        mappings
            .iter()
            .enumerate()
            .map(|(i, m)| Mapping {
                id: i as u64 + 1,
                memory_start: m.memory_start,
                memory_limit: m.memory_limit,
                file_offset: m.file_offset,
                filename: self.string(&m.file),
                build_id: self.string(&m.build_id),
                has_functions: true,
                has_filenames: lines,
                has_line_numbers: lines,
                has_inline_frames: false,
            })
            .collect()
    }

    /// The location of `frame` at return address `addr`: one per address
    /// when addresses are known, else one per frame. pprof's addresses
    /// point into the call instruction, so a return address is moved back
    /// by one.
    fn location(&mut self, frame: &Frame, addr: Option<u64>, maps: &[ObjectMapping]) -> u64 {
        let address = addr.map_or(0, |a| a.saturating_sub(1));
        let key = (frame.clone(), address);
        if let Some(id) = self.location_ids.get(&key) {
            return *id;
        }
        let mapping_id = maps
            .iter()
            .position(|m| (m.memory_start..m.memory_limit).contains(&address))
            .map_or(0, |i| i as u64 + 1);
        let id = self.locations.len() as u64 + 1;
        // A frame without a name is an address left for the analyzer (or
        // any pprof tool) to symbolize: a location with no lines.
        let line = if frame.function.is_empty() {
            Vec::new()
        } else {
            vec![Line {
                function_id: self.function(frame),
                line: i64::from(frame.line),
            }]
        };
        self.locations.push(Location {
            id,
            mapping_id,
            address,
            line,
        });
        self.location_ids.insert(key, id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_locations_carry_addresses_and_their_mapping() {
        let stacks = vec![ProfileSample {
            frames: vec![Frame::new("leak", "", 0), Frame::new("main", "", 0)],
            objects: 1,
            bytes: 64,
            ..Default::default()
        }];
        let maps = [ObjectMapping {
            memory_start: 0x1000,
            memory_limit: 0x2000,
            file_offset: 0,
            file: "/bin/svc".into(),
            build_id: "abcd".into(),
        }];
        let p = build_native_heap_profile(&stacks, &[vec![0x1100, 0x5001]], &maps, false, 1, 0);
        assert_eq!(p.mapping.len(), 1);
        assert_eq!(p.string_table[p.mapping[0].build_id as usize], "abcd");
        assert_eq!(p.location[0].address, 0x10ff);
        assert_eq!(p.location[0].mapping_id, 1);
        assert_eq!(p.location[1].address, 0x5000);
        assert_eq!(p.location[1].mapping_id, 0, "outside every mapping");
    }
}
