//! A count of what an OTLP profiles request holds, taken from the wire
//! format before `prost` builds anything, in the same terms and under the
//! same limits as a pprof profile's (`crate::pprof::Census`): a request
//! of empty messages is a few bytes each on the wire and tens in memory.

use crate::pprof::census::{count_messages, count_refs, Fields, Value};
use crate::pprof::{Census, PprofError};

/// Counts `buf`, an uncompressed `ExportProfilesServiceRequest`.
///
/// Samples and the dictionary's stacks count together as samples;
/// resources, profiles, attributes and mappings as mappings.
pub(super) fn take(buf: &[u8]) -> Result<Census, PprofError> {
    let mut c = Census::default();
    for (tag, body) in messages(buf) {
        match tag {
            1 => resource_profiles(body?, &mut c)?,
            2 => dictionary(body?, &mut c)?,
            _ => {}
        }
    }
    Ok(c)
}

/// The length-delimited fields of `buf`, with their numbers.
fn messages(buf: &[u8]) -> impl Iterator<Item = (u64, Result<&[u8], PprofError>)> {
    Fields(buf).filter_map(|f| match f {
        Ok((tag, Value::Len(body))) => Some((tag, Ok(body))),
        Ok(_) => None,
        // An error ends the walk: the tag does not matter.
        Err(e) => Some((1, Err(e))),
    })
}

fn resource_profiles(buf: &[u8], c: &mut Census) -> Result<(), PprofError> {
    c.mappings += 1;
    for (tag, body) in messages(buf) {
        let body = body?;
        match tag {
            // Resource: its attributes.
            1 => c.mappings += count_messages(body, 1)?,
            // ScopeProfiles: its profiles.
            2 => {
                for (t, profile) in messages(body) {
                    if t == 2 {
                        profile_samples(profile?, c)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn profile_samples(buf: &[u8], c: &mut Census) -> Result<(), PprofError> {
    c.mappings += 1;
    for (tag, sample) in messages(buf) {
        if tag == 2 {
            c.samples += 1;
            c.values += count_refs(sample?, 4)?;
        }
    }
    Ok(())
}

fn dictionary(buf: &[u8], c: &mut Census) -> Result<(), PprofError> {
    for (tag, body) in messages(buf) {
        let body = body?;
        match tag {
            1 => c.mappings += 1,
            2 => {
                c.locations += 1;
                c.lines += count_messages(body, 3)?;
            }
            3 => c.functions += 1,
            5 => {
                c.strings += 1;
                c.longest_string = c.longest_string.max(body.len() as u64);
            }
            7 => {
                c.samples += 1;
                c.location_refs += count_refs(body, 1)?;
            }
            _ => {}
        }
    }
    Ok(())
}
