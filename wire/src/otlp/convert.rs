//! OTLP memory profiles into pprof heap profiles, one per resource and
//! time: the `inuse_space` profile's samples with the `inuse_objects`
//! counts of the same stacks, over tables copied from the request's
//! dictionary. Everything else a request may hold (CPU, allocation
//! rates) is counted as rejected, with the reason.

use std::collections::{BTreeMap, HashMap};

use super::{ExportProfilesServiceRequest, KeyValue, Profile, ProfilesDictionary, Scalar};
use crate::pprof;

/// Who a resource is, from its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceNames {
    /// `service.name`, else OpenTelemetry's `unknown_service`.
    pub service: String,
    /// `service.instance.id`, else `host.name`, else the service.
    pub instance: String,
    /// `host.name`, else empty.
    pub host: String,
    /// Every other scalar attribute, as text.
    pub labels: BTreeMap<String, String>,
}

/// One resource's live heap at one time, as a pprof profile.
#[derive(Debug, Clone)]
pub struct Heap {
    pub names: ResourceNames,
    pub profile: pprof::Profile,
}

/// What a request held: its heaps, and the profiles not taken.
#[derive(Debug, Default)]
pub struct Heaps {
    pub heaps: Vec<Heap>,
    pub rejected: u64,
    /// Why, each reason once.
    pub reasons: Vec<String>,
}

impl Heaps {
    fn reject(&mut self, why: String) {
        self.rejected += 1;
        if !self.reasons.contains(&why) {
            self.reasons.push(why);
        }
    }
}

/// The heaps of `req`, each resource's `inuse_space` profiles paired with
/// its `inuse_objects` profiles of the same time.
pub fn heaps(req: &ExportProfilesServiceRequest) -> Heaps {
    let empty = ProfilesDictionary::default();
    let dict = req.dictionary.as_ref().unwrap_or(&empty);
    let text = |i: i32| -> &str {
        usize::try_from(i)
            .ok()
            .and_then(|i| dict.string_table.get(i))
            .map_or("", String::as_str)
    };
    let mut out = Heaps::default();
    for rp in &req.resource_profiles {
        let attributes = rp.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let names = resource_names(attributes, &text);
        let mut space: Vec<&Profile> = Vec::new();
        let mut objects: HashMap<u64, &Profile> = HashMap::new();
        for p in rp.scope_profiles.iter().flat_map(|s| &s.profiles) {
            let kind = p.sample_type.as_ref().map_or("", |t| text(t.type_strindex));
            match kind {
                "inuse_space" => space.push(p),
                "inuse_objects" => {
                    objects.insert(p.time_unix_nano, p);
                }
                "alloc_space" | "alloc_objects" => out.reject(format!(
                    "{kind}: allocation profiles are taken from heaptide agents only, not over OTLP; send inuse_space and inuse_objects"
                )),
                other => out.reject(format!(
                    "{other:?}: not a memory profile; send inuse_space and inuse_objects"
                )),
            }
        }
        for p in space {
            let counts = objects.get(&p.time_unix_nano).copied();
            out.heaps.push(Heap {
                names: names.clone(),
                profile: to_pprof(p, counts, dict),
            });
        }
    }
    out
}

fn resource_names<'a>(attrs: &[KeyValue], text: &impl Fn(i32) -> &'a str) -> ResourceNames {
    let mut labels = BTreeMap::new();
    for kv in attrs {
        let key = if kv.key.is_empty() {
            text(kv.key_strindex).to_owned()
        } else {
            kv.key.clone()
        };
        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Scalar::String(s)) => s.clone(),
            Some(Scalar::StringIndex(i)) => text(*i).to_owned(),
            Some(Scalar::Bool(b)) => b.to_string(),
            Some(Scalar::Int(i)) => i.to_string(),
            Some(Scalar::Double(d)) => d.to_string(),
            Some(Scalar::Bytes(_)) | None => continue,
        };
        if !key.is_empty() {
            labels.insert(key, value);
        }
    }
    let service = labels
        .remove("service.name")
        .unwrap_or_else(|| "unknown_service".into());
    let host = labels.remove("host.name").unwrap_or_default();
    let instance = labels
        .remove("service.instance.id")
        .or_else(|| (!host.is_empty()).then(|| host.clone()))
        .unwrap_or_else(|| service.clone());
    ResourceNames {
        service,
        instance,
        host,
        labels,
    }
}

/// One pprof heap profile: `space`'s samples, with the object counts of
/// `objects` by stack. pprof ids are the dictionary's indices plus one,
/// since pprof's 0 means none; a mapping index of 0 is none in both.
fn to_pprof(
    space: &Profile,
    objects: Option<&Profile>,
    dict: &ProfilesDictionary,
) -> pprof::Profile {
    let id = |i: i32| u64::try_from(i).map_or(0, |i| i + 1);
    let sum = |values: &[i64]| values.iter().fold(0i64, |a, v| a.saturating_add(*v));
    let counts: HashMap<i32, i64> = objects
        .map(|p| {
            p.samples
                .iter()
                .map(|s| (s.stack_index, sum(&s.values)))
                .collect()
        })
        .unwrap_or_default();
    let mut strings = dict.string_table.clone();
    if strings.is_empty() {
        strings.push(String::new());
    }
    let mut string = |s: &str| {
        strings.push(s.to_owned());
        strings.len() as i64 - 1
    };
    let sample_type = vec![
        pprof::ValueType {
            r#type: string("inuse_objects"),
            unit: string("count"),
        },
        pprof::ValueType {
            r#type: string("inuse_space"),
            unit: string("bytes"),
        },
    ];
    let sample = space
        .samples
        .iter()
        .map(|s| {
            let stack = usize::try_from(s.stack_index)
                .ok()
                .and_then(|i| dict.stack_table.get(i));
            pprof::Sample {
                location_id: stack.map_or(Vec::new(), |st| {
                    st.location_indices.iter().map(|&i| id(i)).collect()
                }),
                value: vec![
                    counts.get(&s.stack_index).copied().unwrap_or(0),
                    sum(&s.values),
                ],
            }
        })
        .collect();
    pprof::Profile {
        sample_type,
        sample,
        mapping: mappings(dict),
        location: dict
            .location_table
            .iter()
            .zip(0..)
            .map(|(l, i)| pprof::Location {
                id: id(i),
                mapping_id: if l.mapping_index > 0 {
                    id(l.mapping_index)
                } else {
                    0
                },
                address: l.address,
                line: l
                    .lines
                    .iter()
                    .map(|line| pprof::Line {
                        function_id: id(line.function_index),
                        line: line.line,
                    })
                    .collect(),
            })
            .collect(),
        function: dict
            .function_table
            .iter()
            .zip(0..)
            .map(|(f, i)| pprof::Function {
                id: id(i),
                name: i64::from(f.name_strindex),
                system_name: i64::from(f.system_name_strindex),
                filename: i64::from(f.filename_strindex),
                start_line: 0,
            })
            .collect(),
        string_table: strings,
        time_nanos: i64::try_from(space.time_unix_nano).unwrap_or(0),
        period: space.period,
        ..Default::default()
    }
}

fn mappings(dict: &ProfilesDictionary) -> Vec<pprof::Mapping> {
    dict.mapping_table
        .iter()
        .zip(1..)
        .skip(1)
        .map(|(m, id)| pprof::Mapping {
            id,
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename: i64::from(m.filename_strindex),
            ..Default::default()
        })
        .collect()
}
