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
