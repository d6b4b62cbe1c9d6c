#![doc = include_str!("../README.md")]

pub mod webdriver;

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

/// CPU time, user and system, that process `pid` has used so far, in
/// seconds; 0 when it cannot be read.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = procfs::process::Process::new(pid as i32).and_then(|p| p.stat()) else {
        return 0.0;
    };
    (stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64
}
