//! The resources heaptide judges, and where each one's samples, detail
//! series and limits come from. A new resource kind starts here.

use serde::{Deserialize, Serialize};

use heaptide_wire::{metric, Unit};

/// The resources heaptide judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Heap,
    Rss,
    Fds,
    Threads,
    Sockets,
}

impl Resource {
    pub const ALL: [Resource; 5] = [
        Resource::Heap,
        Resource::Rss,
        Resource::Fds,
        Resource::Threads,
        Resource::Sockets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Resource::Heap => "heap",
            Resource::Rss => "rss",
            Resource::Fds => "fds",
            Resource::Threads => "threads",
            Resource::Sockets => "sockets",
        }
    }

    pub fn metric(self) -> &'static str {
        match self {
            Resource::Heap => metric::HEAP_ALLOCATED,
            Resource::Rss => metric::RSS,
            Resource::Fds => metric::FDS,
            Resource::Threads => metric::THREADS,
            Resource::Sockets => metric::TCP,
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Resource::Heap | Resource::Rss => Unit::Bytes,
            Resource::Fds => Unit::Fds,
            Resource::Threads => Unit::Threads,
            Resource::Sockets => Unit::Sockets,
        }
    }

    pub fn parse(s: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.name() == s)
    }

    /// Per-kind series that say what grows: fd kinds and TCP states.
    pub fn detail_prefix(self) -> Option<(&'static str, &'static str)> {
        match self {
            Resource::Fds => Some((metric::FDS_KIND_PREFIX, "fd_kind")),
            Resource::Sockets => Some((metric::TCP_STATE_PREFIX, "tcp_state")),
            _ => None,
        }
    }

    /// Candidate limits, the first present wins; `None` means the smallest.
    pub fn limits(self) -> (&'static [(&'static str, &'static str)], bool) {
        const MEMORY: &[(&str, &str)] = &[
            (metric::LIMIT_MEMORY_MAX, "cgroup memory.max"),
            (metric::LIMIT_AS, "RLIMIT_AS"),
            (metric::LIMIT_PHYSICAL_MEMORY, "physical memory"),
        ];
        const FDS: &[(&str, &str)] = &[(metric::LIMIT_NOFILE_SOFT, "RLIMIT_NOFILE")];
        const THREADS: &[(&str, &str)] = &[
            (metric::LIMIT_PIDS_MAX, "cgroup pids.max"),
            (metric::LIMIT_NPROC, "RLIMIT_NPROC"),
            (metric::LIMIT_THREADS_MAX, "kernel threads-max"),
        ];
        match self {
            Resource::Heap | Resource::Rss => (MEMORY, false),
            Resource::Fds | Resource::Sockets => (FDS, false),
            Resource::Threads => (THREADS, true),
        }
    }
}
