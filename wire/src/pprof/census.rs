//! A count of what a pprof protobuf holds, taken from the wire format
//! before `prost` builds anything, so that a small input cannot make the
//! decoder allocate without bound (an empty `Sample` is two bytes on the
//! wire and 48 in memory; a packed location id is one byte and eight).
//!
//! Hand-written because `prost` exposes no counting pass and its
//! `encoding` module is hidden and unstable; the protobuf wire format
//! needs only varints and the four wire types read here.

use super::{DecodeLimits, PprofError};

/// How many of each thing a profile holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Census {
    pub samples: u64,
    pub locations: u64,
    pub functions: u64,
    pub strings: u64,
    /// Location ids over all samples.
    pub location_refs: u64,
    /// Inline lines over all locations.
    pub lines: u64,
    /// Values over all samples.
    pub values: u64,
    /// Mappings and sample types.
    pub mappings: u64,
    pub longest_string: u64,
}

impl Census {
    /// Counts `buf`, an uncompressed `Profile`.
    pub fn take(buf: &[u8]) -> Result<Census, PprofError> {
        let mut c = Census::default();
        for field in Fields(buf) {
            let (tag, value) = field?;
            let Value::Len(body) = value else { continue };
            match tag {
                1 | 3 => c.mappings += 1,
                2 => {
                    c.samples += 1;
                    c.location_refs += count_refs(body, 1)?;
                    c.values += count_refs(body, 2)?;
                }
                4 => {
                    c.locations += 1;
                    c.lines += count_messages(body, 4)?;
                }
                5 => c.functions += 1,
                6 => {
                    c.strings += 1;
                    c.longest_string = c.longest_string.max(body.len() as u64);
                }
                _ => {}
            }
        }
        Ok(c)
    }

    /// The first limit this census breaks, if any.
    pub fn check(&self, l: &DecodeLimits) -> Result<(), PprofError> {
        let checks = [
            (
                "bytes in one string",
                self.longest_string,
                l.max_string_bytes,
            ),
            ("samples", self.samples, l.max_samples),
            ("locations", self.locations, l.max_locations),
            ("functions", self.functions, l.max_functions),
            ("strings", self.strings, l.max_strings),
            (
                "location references",
                self.location_refs,
                l.max_location_refs,
            ),
            ("inline lines", self.lines, l.max_lines),
            ("sample values", self.values, l.max_values),
            ("mappings and sample types", self.mappings, l.max_mappings),
        ];
        for (what, got, limit) in checks {
            if got > limit {
                return Err(PprofError::Limit { what, limit });
            }
        }
        Ok(())
    }
}

pub(crate) enum Value<'a> {
    Scalar,
    Len(&'a [u8]),
}

/// The top-level fields of one message, as (field number, value).
pub(crate) struct Fields<'a>(pub(crate) &'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), PprofError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.field())
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Result<(u64, Value<'a>), PprofError> {
        let key = varint(&mut self.0)?;
        let skip = |buf: &mut &'a [u8], n: u64| -> Result<&'a [u8], PprofError> {
            let n = usize::try_from(n).map_err(|_| malformed("length"))?;
            if buf.len() < n {
                return Err(malformed("truncated field"));
            }
            let (head, tail) = buf.split_at(n);
            *buf = tail;
            Ok(head)
        };
        let value = match key & 7 {
            0 => varint(&mut self.0).map(|_| Value::Scalar)?,
            1 => skip(&mut self.0, 8).map(|_| Value::Scalar)?,
            2 => {
                let n = varint(&mut self.0)?;
                Value::Len(skip(&mut self.0, n)?)
            }
            5 => skip(&mut self.0, 4).map(|_| Value::Scalar)?,
            _ => return Err(malformed("unsupported wire type")),
        };
        Ok((key >> 3, value))
    }
}

/// Ids in field `tag` of `msg`, packed or not.
pub(crate) fn count_refs(msg: &[u8], tag: u64) -> Result<u64, PprofError> {
    let mut n = 0;
    for field in Fields(msg) {
        match field? {
            (t, Value::Scalar) if t == tag => n += 1,
            // A packed run: one varint ends at each byte without the high bit.
            (t, Value::Len(body)) if t == tag => {
                n += body.iter().filter(|b| **b & 0x80 == 0).count() as u64
            }
            _ => {}
        }
    }
    Ok(n)
}

/// Messages in field `tag` of `msg`.
pub(crate) fn count_messages(msg: &[u8], tag: u64) -> Result<u64, PprofError> {
    let mut n = 0;
    for field in Fields(msg) {
        if let (t, Value::Len(_)) = field? {
            n += u64::from(t == tag);
        }
    }
    Ok(n)
}

fn varint(buf: &mut &[u8]) -> Result<u64, PprofError> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first().ok_or(malformed("truncated varint"))?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(malformed("varint longer than ten bytes"))
}

fn malformed(why: &'static str) -> PprofError {
    PprofError::Malformed(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pprof::{build_heap_profile, Frame, ProfileSample};
    use prost::Message;

    #[test]
    fn counts_what_prost_decodes() {
        let f = |n: &str| Frame::new(n, "src/a.rs", 1);
        let stacks = vec![
            ProfileSample {
                frames: vec![f("a"), f("b"), f("c")],
                objects: 1,
                bytes: 10,
                ..Default::default()
            },
            ProfileSample {
                frames: vec![f("a"), f("d")],
                objects: 2,
                bytes: 20,
                ..Default::default()
            },
        ];
        let p = build_heap_profile(&stacks, 1, 0);
        let c = Census::take(&p.encode_to_vec()).unwrap();
        assert_eq!(c.samples, p.sample.len() as u64);
        assert_eq!(c.locations, p.location.len() as u64);
        assert_eq!(c.functions, p.function.len() as u64);
        assert_eq!(c.strings, p.string_table.len() as u64);
        assert_eq!(c.location_refs, 5);
        assert_eq!(c.lines, 4);
        assert_eq!(c.longest_string, "inuse_objects".len() as u64);
    }

    #[test]
    fn truncated_input_is_malformed_not_a_panic() {
        assert!(Census::take(&[0x12, 0x05, 0x01]).is_err());
        assert!(Census::take(&[0xff; 11]).is_err());
        assert!(Census::take(&[0x0b]).is_err()); // a group
    }
}
