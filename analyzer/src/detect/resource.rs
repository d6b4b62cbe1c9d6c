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
    /// A pool the service registered: its slots in use, against its
    /// capacity. One per pool, named in [`Subject::name`].
    Pool,
    /// A queue the service registered: its depth, against its capacity
    /// when bounded.
    Queue,
    /// The alive tasks of the service's tokio runtime.
    Tasks,
}

impl Resource {
    pub const ALL: [Resource; 5] = [
        Resource::Heap,
        Resource::Rss,
        Resource::Fds,
        Resource::Threads,
        Resource::Sockets,
    ];

    /// Every kind, in the order findings are listed.
    pub const KINDS: [Resource; 8] = [
        Resource::Heap,
        Resource::Rss,
        Resource::Fds,
        Resource::Threads,
        Resource::Sockets,
        Resource::Pool,
        Resource::Queue,
        Resource::Tasks,
    ];

    /// Pools, queues and tasks: judged when the service reports them.
    pub fn is_gauge(self) -> bool {
        matches!(self, Resource::Pool | Resource::Queue | Resource::Tasks)
    }

    pub fn name(self) -> &'static str {
        match self {
            Resource::Heap => "heap",
            Resource::Rss => "rss",
            Resource::Fds => "fds",
            Resource::Threads => "threads",
            Resource::Sockets => "sockets",
            Resource::Pool => "pool",
            Resource::Queue => "queue",
            Resource::Tasks => "tasks",
        }
    }

    /// The metric judged; for pools and queues, the prefix of their
    /// gauges (each one's metric is its [`Subject::metric`]).
    pub fn metric(self) -> &'static str {
        match self {
            Resource::Pool => metric::POOL_PREFIX,
            Resource::Queue => metric::QUEUE_PREFIX,
            Resource::Tasks => metric::TOKIO_TASKS_ALIVE,
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
            Resource::Pool => Unit::Slots,
            Resource::Queue => Unit::Items,
            Resource::Tasks => Unit::Tasks,
        }
    }

    pub fn parse(s: &str) -> Option<Resource> {
        Resource::KINDS.into_iter().find(|r| r.name() == s)
    }

    /// Per-kind series that say what grows: fd kinds, TCP states and the
    /// parts of RSS.
    pub fn detail_prefix(self) -> Option<(&'static str, &'static str)> {
        match self {
            Resource::Fds => Some((metric::FDS_KIND_PREFIX, "fd_kind")),
            Resource::Sockets => Some((metric::TCP_STATE_PREFIX, "tcp_state")),
            Resource::Rss => Some((metric::RSS_PART_PREFIX, "rss_part")),
            _ => None,
        }
    }

    /// Per-target series that say what is held: fds by path or peer,
    /// sockets by peer.
    pub fn target_prefix(self) -> Option<(&'static str, &'static str)> {
        match self {
            Resource::Fds => Some((metric::FDS_TARGET_PREFIX, "fd_target")),
            Resource::Sockets => Some((metric::TCP_PEER_PREFIX, "peer")),
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
            // A pool's or queue's capacity is its own gauge.
            Resource::Pool | Resource::Queue | Resource::Tasks => (&[], false),
        }
    }
}

/// One thing judged of an instance: a resource, and for a pool or a
/// queue, which one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    pub resource: Resource,
    /// The metric judged: `fds`, `pool.db.in_use`.
    pub metric: String,
    /// The pool's or queue's name.
    pub name: Option<String>,
}

impl Subject {
    pub fn of(resource: Resource) -> Subject {
        Subject {
            resource,
            metric: resource.metric().to_owned(),
            name: None,
        }
    }

    /// The pools, queues and tasks among a service's metric names.
    pub fn gauges_among(names: &[String]) -> Vec<Subject> {
        let mut out = Vec::new();
        for n in names {
            let named = |resource, prefix, part| {
                metric::gauge_of(n, prefix, part).map(|name| Subject {
                    resource,
                    metric: n.clone(),
                    name: Some(name.to_owned()),
                })
            };
            if let Some(s) = named(Resource::Pool, metric::POOL_PREFIX, metric::POOL_IN_USE)
                .or_else(|| named(Resource::Queue, metric::QUEUE_PREFIX, metric::QUEUE_DEPTH))
            {
                out.push(s);
            } else if n == metric::TOKIO_TASKS_ALIVE {
                out.push(Subject::of(Resource::Tasks));
            }
        }
        out.sort_by(|a, b| (a.resource as u8, &a.metric).cmp(&(b.resource as u8, &b.metric)));
        out.dedup();
        out
    }

    /// The gauge of the same pool or queue named `part`: its capacity,
    /// or its waiters.
    pub fn sibling(&self, part: &str) -> Option<String> {
        let name = self.name.as_deref()?;
        Some(match self.resource {
            Resource::Pool => metric::pool(name, part),
            _ => metric::queue(name, part),
        })
    }

    /// The metrics its judgement reads the latest value of: itself, its
    /// limits, and a pool's waiters.
    pub fn latest_metrics(&self) -> Vec<String> {
        let mut out = vec![self.metric.clone()];
        out.extend(
            self.resource
                .limits()
                .0
                .iter()
                .map(|(m, _)| (*m).to_owned()),
        );
        out.extend(self.sibling(metric::CAPACITY));
        if self.resource == Resource::Pool {
            out.extend(self.sibling(metric::POOL_WAITING));
        }
        out
    }

    /// The name its findings and alerts go by: `fds`, `pool db`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{} {n}", self.resource.name()),
            None => self.resource.name().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_queues_and_tasks_are_found_among_metric_names() {
        let names: Vec<String> = [
            "fds",
            "pool.db.in_use",
            "pool.db.capacity",
            "pool.db.idle",
            "queue.jobs.depth",
            "tokio.tasks_alive",
            "pool..in_use",
        ]
        .map(String::from)
        .to_vec();
        let found = Subject::gauges_among(&names);
        let labels: Vec<String> = found.iter().map(Subject::label).collect();
        assert_eq!(labels, ["pool db", "queue jobs", "tasks"]);
        assert_eq!(
            found[0].latest_metrics(),
            ["pool.db.in_use", "pool.db.capacity", "pool.db.waiting"]
        );
        assert_eq!(
            found[1].sibling(metric::CAPACITY).unwrap(),
            "queue.jobs.capacity"
        );
    }
}
