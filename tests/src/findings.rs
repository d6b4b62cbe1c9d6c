//! Reading `analyzer leaks --format json` in tests.

use std::path::Path;
use std::process::Command;

use heaptide_testkit::bin;

/// `analyzer leaks --since 10m --format json` over `store`.
pub fn leaks_json(store: &Path) -> serde_json::Value {
    let out = Command::new(bin("analyzer"))
        .args(["leaks", "--since", "10m", "--format", "json", "--store"])
        .arg(store)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every resource's verdict over the last ten minutes, with its reason,
/// a line each: what a test prints when the finding it wanted is absent,
/// so that the failure says why the engine judged as it did.
pub fn verdicts(store: &Path) -> String {
    let out = Command::new(bin("analyzer"))
        .args(["predict", "--since", "10m", "--format", "json", "--store"])
        .arg(store)
        .output()
        .unwrap();
    let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(_) => return String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let all = v["findings"].as_array().cloned().unwrap_or_default();
    all.iter()
        .map(|f| {
            format!(
                "{} {}: {} ({}; slope {}/h, confidence {})",
                f["instance"].as_str().unwrap_or("?"),
                f["resource"].as_str().unwrap_or("?"),
                f["verdict"],
                f["reason"].as_str().unwrap_or(""),
                f["slope_per_hour"],
                f["confidence"],
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The finding about `resource` of `instance`, which must be there.
pub fn finding_of<'a>(
    v: &'a serde_json::Value,
    resource: &str,
    instance: &str,
) -> &'a serde_json::Value {
    v["findings"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|f| f["resource"] == resource && f["instance"] == instance)
        })
        .unwrap_or_else(|| panic!("no {resource} finding for {instance}: {v:#}"))
}

/// The finding about `resource`, if any.
pub fn finding<'a>(v: &'a serde_json::Value, resource: &str) -> Option<&'a serde_json::Value> {
    v["findings"]
        .as_array()?
        .iter()
        .find(|f| f["resource"] == resource)
}

/// The top site of a heap finding: its frames, leaf first, and the index
/// of the first frame outside the allocator and the standard library.
pub fn top_site(heap: &serde_json::Value) -> (Vec<&str>, usize) {
    let top = &heap["sites"][0];
    let frames = top["frames"]
        .as_array()
        .unwrap_or_else(|| panic!("no top site: {heap:#}"))
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    (frames, top["app_frame"].as_u64().unwrap() as usize)
}
