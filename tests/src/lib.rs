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
