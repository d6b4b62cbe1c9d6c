//! OpenTelemetry's profiles signal (OTLP), as the analyzer receives it on
//! `POST /v1development/profiles`: an `ExportProfilesServiceRequest` of
//! the `opentelemetry.proto.collector.profiles.v1development` package,
//! pinned at **opentelemetry-proto v1.10.0**, in protobuf.
//!
//! Like [`crate::pprof`], the messages are written out with `prost`'s
//! derive rather than generated, so no build needs `protoc`; only the
//! fields heaptide reads are declared (a decoder skips the others). The
//! field numbers follow v1.10.0's `profiles.proto`, `common.proto` and
//! `resource.proto`; the tests encode with the generated types of the
//! `opentelemetry-proto` crate at that version, so a wrong number fails.
//!
//! [`heaps`] turns each resource's memory profiles into one pprof heap
//! profile (`inuse_objects`, `inuse_space`), so that the rest of ingest
//! treats them as it treats a pprof push.

mod census;
mod convert;

pub use convert::{heaps, Heap, Heaps, ResourceNames};

use crate::pprof::{DecodeLimits, PprofError};

/// The path OTLP/HTTP exporters post profiles to at v1.10.0.
pub const PROFILES_PATH: &str = "/v1development/profiles";

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportProfilesServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_profiles: Vec<ResourceProfiles>,
    #[prost(message, optional, tag = "2")]
    pub dictionary: Option<ProfilesDictionary>,
}

/// The answer: empty when everything was taken; otherwise how many
/// profiles were not, and why.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportProfilesServiceResponse {
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportProfilesPartialSuccess>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportProfilesPartialSuccess {
    #[prost(int64, tag = "1")]
    pub rejected_profiles: i64,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceProfiles {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_profiles: Vec<ScopeProfiles>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
    /// The key as an index into the dictionary's strings.
    #[prost(int32, tag = "3")]
    pub key_strindex: i32,
}

/// A scalar attribute value; arrays and maps (5, 6) are not read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "Scalar", tags = "1, 2, 3, 4, 7, 8")]
    pub value: Option<Scalar>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Scalar {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(bytes, tag = "7")]
    Bytes(Vec<u8>),
    /// A string of the dictionary's, by index.
    #[prost(int32, tag = "8")]
    StringIndex(i32),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeProfiles {
    #[prost(message, repeated, tag = "2")]
    pub profiles: Vec<Profile>,
}

/// One profile holds one sample type at v1.10.0: a heap is two, space
/// and objects, over the same stacks.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    #[prost(message, optional, tag = "1")]
    pub sample_type: Option<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(fixed64, tag = "3")]
    pub time_unix_nano: u64,
    #[prost(message, optional, tag = "5")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "6")]
    pub period: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(int32, tag = "1")]
    pub type_strindex: i32,
    #[prost(int32, tag = "2")]
    pub unit_strindex: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(int32, tag = "1")]
    pub stack_index: i32,
    #[prost(int64, repeated, tag = "4")]
    pub values: Vec<i64>,
}

/// The tables every profile of a request shares; entry 0 of each is its
/// zero value, which an index of 0 means.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProfilesDictionary {
    #[prost(message, repeated, tag = "1")]
    pub mapping_table: Vec<Mapping>,
    #[prost(message, repeated, tag = "2")]
    pub location_table: Vec<Location>,
    #[prost(message, repeated, tag = "3")]
    pub function_table: Vec<Function>,
    #[prost(string, repeated, tag = "5")]
    pub string_table: Vec<String>,
    #[prost(message, repeated, tag = "7")]
    pub stack_table: Vec<Stack>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub memory_start: u64,
    #[prost(uint64, tag = "2")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "3")]
    pub file_offset: u64,
    #[prost(int32, tag = "4")]
    pub filename_strindex: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Stack {
    /// Leaf first.
    #[prost(int32, repeated, tag = "1")]
    pub location_indices: Vec<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    #[prost(int32, tag = "1")]
    pub mapping_index: i32,
    #[prost(uint64, tag = "2")]
    pub address: u64,
    /// Innermost (inlined) first, the caller last, as in pprof.
    #[prost(message, repeated, tag = "3")]
    pub lines: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    #[prost(int32, tag = "1")]
    pub function_index: i32,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    #[prost(int32, tag = "1")]
    pub name_strindex: i32,
    #[prost(int32, tag = "2")]
    pub system_name_strindex: i32,
    #[prost(int32, tag = "3")]
    pub filename_strindex: i32,
}

/// Decodes an OTLP profiles request, gzipped or not, within `limits`: the
/// same inflation bound and count before allocation as a pprof profile.
pub fn decode(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<ExportProfilesServiceRequest, PprofError> {
    use prost::Message;
    let raw = crate::pprof::inflate(bytes, limits)?;
    census::take(&raw)
        .map_err(|e| match e {
            PprofError::Malformed(why) => PprofError::OtlpMalformed(why),
            e => e,
        })?
        .check(limits)?;
    ExportProfilesServiceRequest::decode(raw.as_ref()).map_err(PprofError::Otlp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A request with one resource, one heap of two stacks (space and
    /// objects) and a CPU profile, over a dictionary whose entry 0 of each
    /// table is its zero value.
    fn request() -> ExportProfilesServiceRequest {
        let kv = |key: &str, v: Scalar| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            key_strindex: 0,
        };
        let profile = |t: i32, u: i32, values: [i64; 2]| Profile {
            sample_type: Some(ValueType {
                type_strindex: t,
                unit_strindex: u,
            }),
            samples: vec![
                Sample {
                    stack_index: 1,
                    values: vec![values[0]],
                },
                Sample {
                    stack_index: 2,
                    values: vec![values[1]],
                },
            ],
            time_unix_nano: 5_000_000,
            period_type: None,
            period: 4096,
        };
        ExportProfilesServiceRequest {
            resource_profiles: vec![ResourceProfiles {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", Scalar::String("api".into())),
                        kv("host.name", Scalar::String("h1".into())),
                        kv("zone", Scalar::StringIndex(5)),
                        kv("replicas", Scalar::Int(3)),
                    ],
                }),
                scope_profiles: vec![ScopeProfiles {
                    profiles: vec![
                        profile(1, 2, [3000, 500]),
                        profile(3, 4, [3, 1]),
                        profile(0, 0, [1, 1]),
                    ],
                }],
            }],
            dictionary: Some(dictionary()),
        }
    }

    /// The request's tables: entry 0 of each is its zero value.
    fn dictionary() -> ProfilesDictionary {
        let strings = [
            "",
            "inuse_space",
            "bytes",
            "inuse_objects",
            "count",
            "leak",
            "main",
        ];
        let location = |f: i32| Location {
            mapping_index: 0,
            address: 0,
            lines: vec![Line {
                function_index: f,
                line: 3,
            }],
        };
        let function = |name: i32| Function {
            name_strindex: name,
            system_name_strindex: 0,
            filename_strindex: 0,
        };
        ProfilesDictionary {
            mapping_table: vec![Mapping::default()],
            location_table: vec![Location::default(), location(1), location(2)],
            function_table: vec![Function::default(), function(5), function(6)],
            string_table: strings.iter().map(|s| s.to_string()).collect(),
            stack_table: vec![
                Stack::default(),
                Stack {
                    location_indices: vec![1, 2],
                },
                Stack {
                    location_indices: vec![2],
                },
            ],
        }
    }

    #[test]
    fn the_census_counts_what_prost_decodes() {
        let req = request();
        let c = census::take(&req.encode_to_vec()).unwrap();
        let dict = req.dictionary.as_ref().unwrap();
        // Six samples over three profiles, and three stacks.
        assert_eq!(c.samples, 6 + 3);
        assert_eq!(c.values, 6);
        assert_eq!(c.locations, dict.location_table.len() as u64);
        assert_eq!(c.functions, dict.function_table.len() as u64);
        assert_eq!(c.strings, dict.string_table.len() as u64);
        assert_eq!(c.location_refs, 3);
        assert_eq!(c.lines, 2);
        // A resource, its four attributes, three profiles, one mapping.
        assert_eq!(c.mappings, 1 + 4 + 3 + 1);
        assert_eq!(c.longest_string, "inuse_objects".len() as u64);
    }

    #[test]
    fn a_resource_heap_becomes_a_pprof_heap_with_its_names_and_labels() {
        let bytes = request().encode_to_vec();
        let req = decode(&bytes, &DecodeLimits::default()).unwrap();
        let out = heaps(&req);
        assert_eq!(out.heaps.len(), 1);
        assert_eq!(out.rejected, 1, "{:?}", out.reasons);
        let h = &out.heaps[0];
        assert_eq!(
            (
                h.names.service.as_str(),
                h.names.instance.as_str(),
                h.names.host.as_str()
            ),
            ("api", "h1", "h1")
        );
        assert_eq!(h.names.labels["zone"], "leak");
        assert_eq!(h.names.labels["replicas"], "3");
        let stacks = crate::pprof::heap_stacks(&h.profile, &DecodeLimits::default()).unwrap();
        let names: Vec<Vec<&str>> = stacks
            .iter()
            .map(|s| s.frames.iter().map(|f| &*f.function).collect())
            .collect();
        assert_eq!(names, vec![vec!["leak", "main"], vec!["main"]]);
        assert_eq!((stacks[0].objects, stacks[0].bytes), (3, 3000));
        assert_eq!((stacks[1].objects, stacks[1].bytes), (1, 500));
        assert_eq!(h.profile.time_nanos, 5_000_000);
    }

    #[test]
    fn requests_past_a_limit_or_cut_short_are_refused_not_built() {
        let bytes = request().encode_to_vec();
        let small = DecodeLimits {
            max_samples: 4,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            decode(&bytes, &small),
            Err(PprofError::Limit {
                what: "samples",
                ..
            })
        ));
        let cut = &bytes[..bytes.len() - 3];
        let e = decode(cut, &DecodeLimits::default()).unwrap_err();
        assert!(e.to_string().contains("OTLP"), "{e}");
    }

    proptest::proptest! {
        /// Any bytes, and any damage to a real request, decode or are
        /// refused: never a panic, and never past the limits.
        #[test]
        fn damaged_requests_never_panic(at in 0usize..2000, byte in 0u8..=255, junk in proptest::collection::vec(0u8..=255, 0..64)) {
            let mut bytes = request().encode_to_vec();
            let at = at % bytes.len();
            bytes[at] = byte;
            bytes.extend_from_slice(&junk);
            let limits = DecodeLimits::default();
            if let Ok(req) = decode(&bytes, &limits) {
                for h in heaps(&req).heaps {
                    let _ = crate::pprof::heap_stacks(&h.profile, &limits);
                }
            }
            let _ = decode(&junk, &limits);
        }
    }
}
