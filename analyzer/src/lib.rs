#![doc = include_str!("../README.md")]

pub mod check;
pub mod config;
pub mod continuous;
pub mod demo;
pub mod detect;
mod error;
pub mod ingest;
pub mod read;
pub mod select;
pub(crate) mod server;
pub mod store;
pub mod symbols;

pub use error::{Error, Result, StoreTrouble};
pub use server::routes;
pub use server::serve;
/// The decoders of tokens files and session cookies, for the fuzz targets.
pub use server::{session, tokens};
