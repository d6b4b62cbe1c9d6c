//! Heap profiles back into symbolized stacks, within a frame budget.

use std::collections::HashMap;
use std::sync::Arc;

use super::{DecodeLimits, Frame, PprofError, Profile, ProfileSample};

/// Turns a heap profile back into symbolized stacks with
/// (`inuse_objects`, `inuse_space`) values, and `alloc_objects` and
/// `alloc_space` where the profile has them; a profile with `inuse_space`
/// alone (`jemalloc_pprof` writes no object counts) has 0 objects. Stacks are leaf first; inlined
/// frames are expanded, innermost first. Every frame shares its names with
/// the profile's string table, and expansion stops at the first stack or
/// total past `limits`, before it is built.
pub fn heap_stacks(
    profile: &Profile,
    limits: &DecodeLimits,
) -> Result<Vec<ProfileSample>, PprofError> {
    let strings: Vec<Arc<str>> = profile
        .string_table
        .iter()
        .map(|s| Arc::from(s.as_str()))
        .collect();
    let empty: Arc<str> = Arc::from("");
    let st = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| strings.get(i))
            .unwrap_or(&empty)
            .clone()
    };
    let index_of = |name: &'static str| {
        profile
            .sample_type
            .iter()
            .position(|v| &*st(v.r#type) == name)
            .ok_or(PprofError::MissingSampleType(name))
    };
    let objects_ix = index_of("inuse_objects").ok();
    let bytes_ix = index_of("inuse_space")?;
    let alloc_objects_ix = index_of("alloc_objects").ok();
    let alloc_bytes_ix = index_of("alloc_space").ok();
    let functions: HashMap<u64, (Arc<str>, Arc<str>)> = profile
        .function
        .iter()
        .map(|f| (f.id, (st(f.name), st(f.filename))))
        .collect();
    let locations: HashMap<u64, Vec<Frame>> = profile
        .location
        .iter()
        .map(|l| Ok((l.id, location_frames(l, &functions)?)))
        .collect::<Result<_, PprofError>>()?;
    let mut budget = Budget::new(limits);
    let mut out = Vec::with_capacity(profile.sample.len());
    for sample in &profile.sample {
        let mut frames = Vec::new();
        for id in &sample.location_id {
            let loc = locations.get(id).ok_or(PprofError::DanglingReference {
                what: "location",
                id: *id,
            })?;
            budget.take(frames.len(), loc)?;
            frames.extend_from_slice(loc);
        }
        let value = |ix: Option<usize>| ix.and_then(|i| sample.value.get(i)).copied().unwrap_or(0);
        out.push(ProfileSample {
            frames,
            objects: value(objects_ix),
            bytes: value(Some(bytes_ix)),
            alloc_objects: value(alloc_objects_ix),
            alloc_bytes: value(alloc_bytes_ix),
        });
    }
    Ok(out)
}

/// A location's frames, innermost first; an unsymbolized location is its
/// address.
fn location_frames(
    loc: &super::Location,
    functions: &HashMap<u64, (Arc<str>, Arc<str>)>,
) -> Result<Vec<Frame>, PprofError> {
    if loc.line.is_empty() {
        return Ok(vec![Frame::new(format!("{:#x}", loc.address), "", 0)]);
    }
    loc.line
        .iter()
        .map(|line| {
            let (function, file) =
                functions
                    .get(&line.function_id)
                    .ok_or(PprofError::DanglingReference {
                        what: "function",
                        id: line.function_id,
                    })?;
            Ok(Frame {
                function: function.clone(),
                file: file.clone(),
                line: u32::try_from(line.line).unwrap_or(0),
            })
        })
        .collect()
}

/// What expansion may still produce.
struct Budget<'a> {
    limits: &'a DecodeLimits,
    frames: u64,
    text: u64,
}

impl<'a> Budget<'a> {
    fn new(limits: &'a DecodeLimits) -> Self {
        Budget {
            limits,
            frames: 0,
            text: 0,
        }
    }

    /// Charges one location's frames to a stack that has `so_far` frames.
    fn take(&mut self, so_far: usize, loc: &[Frame]) -> Result<(), PprofError> {
        let l = self.limits;
        let n = loc.len() as u64;
        if so_far as u64 + n > l.max_frames_per_stack {
            return Err(PprofError::Limit {
                what: "frames in one stack",
                limit: l.max_frames_per_stack,
            });
        }
        self.frames += n;
        if self.frames > l.max_frames {
            return Err(PprofError::Limit {
                what: "frames over all stacks",
                limit: l.max_frames,
            });
        }
        self.text += loc
            .iter()
            .map(|f| (f.function.len() + f.file.len()) as u64)
            .sum::<u64>();
        if self.text > l.max_text_bytes {
            return Err(PprofError::Limit {
                what: "bytes of frame names over all stacks",
                limit: l.max_text_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pprof::{build_heap_profile, Function, Line, Location, Sample};

    /// The attack that once took the analyzer down: one long name, one
    /// location that inlines it a thousand times, and many samples that
    /// each list that location hundreds of times.
    fn hostile(name_bytes: usize, lines: usize, samples: usize, refs: usize) -> Profile {
        let mut p = build_heap_profile(&[], 1, 0);
        let name = p.string_table.len() as i64;
        p.string_table.push("x".repeat(name_bytes));
        p.function.push(Function {
            id: 1,
            name,
            system_name: name,
            filename: 0,
            start_line: 0,
        });
        p.location.push(Location {
            id: 1,
            mapping_id: 0,
            address: 0,
            line: vec![
                Line {
                    function_id: 1,
                    line: 1
                };
                lines
            ],
        });
        p.sample = vec![
            Sample {
                location_id: vec![1; refs],
                value: vec![1, 1],
            };
            samples
        ];
        p
    }

    #[test]
    fn a_stack_past_its_frame_limit_stops_expansion() {
        let p = hostile(1 << 10, 1000, 20, 300);
        let e = heap_stacks(&p, &DecodeLimits::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "profile has more than 512 frames in one stack"
        );
    }

    #[test]
    fn the_whole_profile_is_held_to_its_frame_and_text_budgets() {
        let p = hostile(16, 4, 1000, 100);
        let limits = DecodeLimits {
            max_frames: 100_000,
            ..Default::default()
        };
        let e = heap_stacks(&p, &limits).unwrap_err();
        assert!(e.to_string().contains("frames over all stacks"), "{e}");
        let limits = DecodeLimits {
            max_text_bytes: 1 << 16,
            ..Default::default()
        };
        let e = heap_stacks(&p, &limits).unwrap_err();
        assert!(e.to_string().contains("bytes of frame names"), "{e}");
    }

    #[test]
    fn expanded_frames_share_their_names() {
        let p = hostile(1 << 10, 2, 3, 4);
        let stacks = heap_stacks(&p, &DecodeLimits::default()).unwrap();
        assert_eq!(stacks.len(), 3);
        assert_eq!(stacks[0].frames.len(), 8);
        assert!(Arc::ptr_eq(
            &stacks[0].frames[0].function,
            &stacks[2].frames[7].function
        ));
    }

    #[test]
    fn long_names_are_refused_before_decoding() {
        use prost::Message;
        let p = hostile(1 << 20, 1, 1, 1);
        let e = crate::pprof::decode(&p.encode_to_vec(), &DecodeLimits::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "profile has more than 16384 bytes in one string"
        );
    }
}
