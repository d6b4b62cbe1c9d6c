use std::io;

/// Everything that can go wrong in the agent's public API.
///
/// Sampling errors after start are never returned to the host: they are
/// logged and counted, and the agent carries on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid setting {key}={value:?}: {reason}")]
    InvalidConfig {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("a heaptide agent is already running in this process")]
    AlreadyRunning,
    #[error("could not spawn the {thread} thread")]
    Spawn {
        thread: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("jemalloc control {name} failed: {message}")]
    Jemalloc { name: &'static str, message: String },
    #[error("heap profiling is off: {0}")]
    ProfilingOff(String),
    #[error("could not read the heap profile dump")]
    DumpRead(#[source] io::Error),
    #[error("heap profile dump is malformed at line {line}: {reason}")]
    DumpParse { line: usize, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
