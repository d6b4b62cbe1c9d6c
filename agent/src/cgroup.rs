//! The process's cgroup: its memory and pids limits, its memory use, the
//! events of hitting them (an OOM kill among them), and memory pressure.
//!
//! cgroup v2 (`memory.max`, `memory.current`, `memory.events`,
//! `memory.pressure`, `pids.max`) and v1's memory and pids controllers
//! (`memory.limit_in_bytes`, `memory.usage_in_bytes`, the `oom_kill` line
//! of `memory.oom_control`, `memory.failcnt`), as hosts still mount either
//! or both. Memory pressure comes from the cgroup's `memory.pressure`
//! (v2), else the host's `/proc/pressure/memory`. Every file is opened once
//! and kept ([`crate::kept`]).

use std::path::{Path, PathBuf};

use heaptide_wire::metric;
use procfs::process::Process;

use crate::kept::KeptFile;
use crate::process::Metrics;

/// How a kept file is read.
#[derive(Clone, Copy)]
enum Shape {
    /// One number, or `max` for none; v1 writes "none" as a huge number.
    Number(&'static str),
    /// `key value` lines: each key in the list is sent under its metric.
    Keyed(&'static [(&'static str, &'static str)]),
    /// PSI lines: `some avg10=0.12 ...` and `full avg10=...`.
    Pressure,
    /// v1's `memory.usage_in_bytes`: sent only under a memory limit of
    /// the cgroup's own. Without one, v1 hosts put whole containers and
    /// their page cache in one shared group, whose use says nothing of
    /// this process's room.
    UsageV1,
}

/// v1 writes "no limit" as the largest page-aligned 63-bit number.
const V1_UNLIMITED: f64 = (1u64 << 62) as f64;

const V2_EVENTS: &[(&str, &str)] = &[
    ("high", metric::CGROUP_EVENTS_HIGH),
    ("max", metric::CGROUP_EVENTS_MAX),
    ("oom", metric::CGROUP_EVENTS_OOM),
    ("oom_kill", metric::CGROUP_EVENTS_OOM_KILL),
];
const V1_OOM: &[(&str, &str)] = &[("oom_kill", metric::CGROUP_EVENTS_OOM_KILL)];

pub(crate) struct Cgroup {
    files: Vec<(KeptFile, Shape)>,
}

impl Cgroup {
    pub(crate) fn open() -> Cgroup {
        let mut wanted: Vec<(PathBuf, Shape)> = Vec::new();
        let me = Process::myself().ok();
        let groups = me
            .and_then(|m| m.cgroups().ok())
            .map(|g| g.0)
            .unwrap_or_default();
        if let Some(dir) = v2_dir(&groups) {
            for (file, shape) in [
                ("memory.max", Shape::Number(metric::LIMIT_MEMORY_MAX)),
                (
                    "memory.current",
                    Shape::Number(metric::CGROUP_MEMORY_CURRENT),
                ),
                ("pids.max", Shape::Number(metric::LIMIT_PIDS_MAX)),
                ("memory.events", Shape::Keyed(V2_EVENTS)),
                ("memory.pressure", Shape::Pressure),
            ] {
                wanted.push((dir.join(file), shape));
            }
        }
        for (controller, file, shape) in [
            (
                "memory",
                "memory.limit_in_bytes",
                Shape::Number(metric::LIMIT_MEMORY_MAX),
            ),
            ("memory", "memory.usage_in_bytes", Shape::UsageV1),
            (
                "memory",
                "memory.failcnt",
                Shape::Number(metric::CGROUP_EVENTS_MAX),
            ),
            ("memory", "memory.oom_control", Shape::Keyed(V1_OOM)),
            ("pids", "pids.max", Shape::Number(metric::LIMIT_PIDS_MAX)),
        ] {
            if let Some(dir) = v1_dir(&groups, controller) {
                wanted.push((dir.join(file), shape));
            }
        }
        wanted.push((PathBuf::from("/proc/pressure/memory"), Shape::Pressure));
        let mut files: Vec<(KeptFile, Shape)> = Vec::new();
        for (path, shape) in wanted {
            // One source per metric: v2's, when both are mounted with it.
            let pressure_taken = matches!(shape, Shape::Pressure)
                && files.iter().any(|(_, s)| matches!(s, Shape::Pressure));
            if pressure_taken || files.iter().any(|(_, s)| same_metric(s, &shape)) {
                continue;
            }
            if let Some(k) = KeptFile::open(&path) {
                files.push((k, shape));
            }
        }
        Cgroup { files }
    }

    pub(crate) fn sample(&self, buf: &mut Vec<u8>, out: &mut Metrics) {
        for (file, shape) in &self.files {
            let Some(text) = file
                .read(buf)
                .ok()
                .and_then(|b| std::str::from_utf8(b).ok())
            else {
                continue;
            };
            read(text, *shape, out);
        }
    }
}

fn same_metric(a: &Shape, b: &Shape) -> bool {
    let usage = |s: &Shape| match s {
        Shape::UsageV1 => Shape::Number(metric::CGROUP_MEMORY_CURRENT),
        s => *s,
    };
    match (usage(a), usage(b)) {
        (Shape::Number(x), Shape::Number(y)) => x == y,
        (Shape::Keyed(x), Shape::Keyed(y)) => x.iter().any(|(_, m)| y.iter().any(|(_, n)| m == n)),
        _ => false,
    }
}

fn read(text: &str, shape: Shape, out: &mut Metrics) {
    match shape {
        Shape::UsageV1 => {
            if out.contains_key(metric::LIMIT_MEMORY_MAX) {
                read(text, Shape::Number(metric::CGROUP_MEMORY_CURRENT), out);
            }
        }
        Shape::Number(m) => {
            if let Ok(v) = text.trim().parse::<u64>() {
                let v = v as f64;
                // "No limit", as v1 writes it, is no limit sent.
                if !(m.starts_with("limit.") && v >= V1_UNLIMITED) {
                    out.insert(m.to_owned(), v);
                }
            }
        }
        Shape::Keyed(keys) => {
            for line in text.lines() {
                let mut f = line.split_ascii_whitespace();
                let (Some(k), Some(v)) = (f.next(), f.next().and_then(|v| v.parse::<f64>().ok()))
                else {
                    continue;
                };
                if let Some((_, m)) = keys.iter().find(|(key, _)| *key == k) {
                    out.insert((*m).to_owned(), v);
                }
            }
        }
        Shape::Pressure => {
            for line in text.lines() {
                let mut f = line.split_ascii_whitespace();
                let kind = f.next();
                let avg10 = f
                    .next()
                    .and_then(|a| a.strip_prefix("avg10="))
                    .and_then(|v| v.parse::<f64>().ok());
                let m = match kind {
                    Some("some") => metric::PRESSURE_MEMORY_SOME,
                    Some("full") => metric::PRESSURE_MEMORY_FULL,
                    _ => continue,
                };
                if let Some(v) = avg10 {
                    out.insert(m.to_owned(), v);
                }
            }
        }
    }
}

/// The process's cgroup v2 directory, when cgroup2 is mounted.
fn v2_dir(groups: &[procfs::ProcessCGroup]) -> Option<PathBuf> {
    let unified = groups.iter().find(|g| g.hierarchy == 0)?;
    let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .find(|r| Path::new(r).join("cgroup.controllers").exists())?;
    let dir = Path::new(root).join(unified.pathname.trim_start_matches('/'));
    dir.exists().then_some(dir)
}

/// The process's directory of a cgroup v1 controller, when it is mounted.
fn v1_dir(groups: &[procfs::ProcessCGroup], controller: &str) -> Option<PathBuf> {
    let g = groups
        .iter()
        .find(|g| g.hierarchy != 0 && g.controllers.iter().any(|c| c == controller))?;
    let dir = Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(g.pathname.trim_start_matches('/'));
    dir.exists().then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shape_reads_what_its_file_says() {
        let mut m = Metrics::new();
        read("max\n", Shape::Number(metric::LIMIT_MEMORY_MAX), &mut m);
        read(
            "9223372036854771712\n",
            Shape::Number(metric::LIMIT_MEMORY_MAX),
            &mut m,
        );
        assert!(
            !m.contains_key(metric::LIMIT_MEMORY_MAX),
            "no limit is none: {m:?}"
        );
        read(
            "268435456\n",
            Shape::Number(metric::LIMIT_MEMORY_MAX),
            &mut m,
        );
        read("1000\n", Shape::UsageV1, &mut m);
        assert_eq!(
            m[metric::CGROUP_MEMORY_CURRENT],
            1000.0,
            "under a limit of its own"
        );
        let mut unlimited = Metrics::new();
        read("1000\n", Shape::UsageV1, &mut unlimited);
        assert!(
            unlimited.is_empty(),
            "a shared group's use, without a limit"
        );
        assert_eq!(m[metric::LIMIT_MEMORY_MAX], 268_435_456.0);
        read(
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
            Shape::Keyed(V1_OOM),
            &mut m,
        );
        assert_eq!(m[metric::CGROUP_EVENTS_OOM_KILL], 3.0);
        read(
            "some avg10=1.50 avg60=0.20 avg300=0.00 total=1\nfull avg10=0.25 avg60=0 avg300=0 total=1\n",
            Shape::Pressure,
            &mut m,
        );
        assert_eq!(m[metric::PRESSURE_MEMORY_SOME], 1.5);
        assert_eq!(m[metric::PRESSURE_MEMORY_FULL], 0.25);
    }

    #[test]
    fn this_process_reads_its_cgroup_and_the_hosts_pressure() {
        let mut m = Metrics::new();
        Cgroup::open().sample(&mut Vec::new(), &mut m);
        if std::path::Path::new("/proc/pressure/memory").exists() {
            assert!(m.contains_key(metric::PRESSURE_MEMORY_SOME), "{m:?}");
        }
    }
}
