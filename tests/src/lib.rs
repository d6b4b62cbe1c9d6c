#![doc = include_str!("../README.md")]

pub mod webdriver;

pub use heaptide_testkit::*;
