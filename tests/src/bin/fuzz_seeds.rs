//! Writes the seed inputs of the fuzz targets: a real batch body and a
//! real pprof profile, as the agent sends them, and an OTLP profiles
//! request holding the same profile.
//!
//! `cargo run -p heaptide-tests --bin fuzz_seeds -- fuzz/seeds`

use std::path::PathBuf;

use base64::Engine;
use heaptide_testkit::fixtures;

fn main() {
    let dir: PathBuf = std::env::args().nth(1).expect("corpus directory").into();
    let now = 1_800_000_000_000;
    let mut b = fixtures::batch(fixtures::agent("svc", "i-1", 7, now - 60_000), 1, now);
    b.samples.push(fixtures::metrics(
        now,
        &[("fds", 10.0), ("heap.allocated", 1e6)],
    ));
    let stacks = [
        fixtures::stack(&["alloc::alloc::alloc", "leaf", "main"], 4096, 1),
        fixtures::stack(&["other", "main"], 64, 2),
    ];
    b.profiles.push(fixtures::heap_profile(now, &stacks));
    let pprof = base64::engine::general_purpose::STANDARD
        .decode(&b.profiles[0].pprof_gz_base64)
        .unwrap();
    let write = |target: &str, bytes: &[u8]| {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("seed"), bytes).unwrap();
    };
    // The ingest target reads its first byte as "gzipped or not".
    let mut body = vec![0u8];
    body.extend(serde_json::to_vec(&b).unwrap());
    write("ingest_body", &body);
    write("pprof", &pprof);
    write("otlp", &otlp_seed());
    write(
        "tokens_toml",
        b"[[token]]\nname = \"agents\"\nkind = \"ingest\"\nsecret = \"0123456789abcdef\"\nservices = [\"billing\"]\n\n[[token]]\nname = \"grafana\"\nkind = \"read\"\nsecret = \"fedcba9876543210\"\n",
    );
    write(
        "session_cookie",
        b"v1:1800000060:grafana:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    );
}

/// An OTLP request of one resource whose heap is two stacks, in space and
/// objects profiles over one dictionary.
fn otlp_seed() -> Vec<u8> {
    use heaptide_wire::otlp::*;
    use prost::Message;
    let strings = [
        "",
        "inuse_space",
        "bytes",
        "inuse_objects",
        "count",
        "leaf",
        "main",
        "service.name",
        "svc",
    ];
    let profile = |t: i32, u: i32, v: [i64; 2]| Profile {
        sample_type: Some(ValueType {
            type_strindex: t,
            unit_strindex: u,
        }),
        samples: vec![
            Sample {
                stack_index: 1,
                values: vec![v[0]],
            },
            Sample {
                stack_index: 2,
                values: vec![v[1]],
            },
        ],
        time_unix_nano: 1_800_000_000_000_000_000,
        period_type: None,
        period: 524_288,
    };
    let location = |f: i32| Location {
        mapping_index: 0,
        address: 0x4010,
        lines: vec![Line {
            function_index: f,
            line: 9,
        }],
    };
    let function = |n: i32| Function {
        name_strindex: n,
        system_name_strindex: n,
        filename_strindex: 0,
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: String::new(),
                    value: Some(AnyValue {
                        value: Some(Scalar::StringIndex(8)),
                    }),
                    key_strindex: 7,
                }],
            }),
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![profile(1, 2, [4096, 64]), profile(3, 4, [1, 2])],
            }],
        }],
        dictionary: Some(ProfilesDictionary {
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
        }),
    }
    .encode_to_vec()
}
