#![doc = include_str!("../README.md")]

mod findings;
pub mod webdriver;

pub use findings::{finding, finding_of, leaks_json, top_site, verdicts};

pub use heaptide_testkit::*;

/// The value after `name` on the command line (`--runs 5`), for the
/// benchmark binaries.
pub fn flag_value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Builds `packages` in release, for a benchmark that runs their
/// binaries beside itself; panics when the build fails.
pub fn build_release(packages: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--release", "-j2"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let status = cmd.status().expect("cargo build");
    assert!(status.success(), "building {packages:?} failed");
}

/// CPU time, user and system, that process `pid` has used so far, in
/// seconds; 0 when it cannot be read.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = procfs::process::Process::new(pid as i32).and_then(|p| p.stat()) else {
        return 0.0;
    };
    (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
}

/// Where the browser tests keep their screenshots: `target/ui-screenshots`.
pub fn shots() -> std::path::PathBuf {
    bin("analyzer")
        .parent()
        .and_then(|p| p.parent())
        .map_or_else(|| "ui-screenshots".into(), |p| p.join("ui-screenshots"))
}

/// Sets the flag when dropped, so that load driven on another thread stops
/// even when a check panics.
pub struct StopOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
