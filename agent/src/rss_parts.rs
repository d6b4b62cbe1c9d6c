//! What RSS is made of: the heap, the allocator's overhead, thread stacks,
//! anonymous memory outside the allocator, and file-backed pages, so that
//! RSS growth that is not the heap is named.
//!
//! jemalloc says what it holds (`stats.allocated`, `active`, `metadata`,
//! `resident`); `/proc/self/smaps` says what the process holds: anonymous
//! and file-backed pages, and which mappings are thread stacks (an
//! anonymous read-write mapping right above a no-access guard mapping, as
//! glibc lays out every thread's stack, and the main thread's `[stack]`).
//! What is anonymous but neither the allocator's nor a stack is memory
//! mapped outside the allocator: a C library's arena, an `mmap` never
//! unmapped.
//!
//! smaps walks every mapping's pages: a process with many mappings pays
//! milliseconds for it. So it is read again only once the time since the
//! last read is [`COST_SHARE`] times the CPU time that read took (1% of a
//! core at most), and each sample between uses the last read's shares. It is read
//! from a file kept open since the start (so that it still reads at the
//! fd limit), line by line: `procfs`'s parser would build every mapping's
//! fields into maps on each read.

use std::time::{Duration, Instant};

use heaptide_wire::metric;

use crate::kept::KeptFile;
use crate::process::Metrics;

/// smaps is read again after this many times what its last read took.
pub(crate) const COST_SHARE: u32 = 100;

/// What smaps says, summed over every mapping, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Smaps {
    pub rss: f64,
    pub anonymous: f64,
    pub stacks: f64,
}

/// The largest guard below a thread's stack: glibc's default is a page,
/// and a thread may ask for more.
const MAX_GUARD: u64 = 1 << 20;

/// The mapping being read: whether it could be a stack, and its pages.
#[derive(Default)]
struct Mapping {
    end: u64,
    guard: bool,
    stack: bool,
    rss: f64,
}

/// Sums one smaps text, fed line by line.
#[derive(Default)]
pub(crate) struct SmapsSum {
    total: Smaps,
    current: Mapping,
}

fn kib(rest: &str) -> f64 {
    rest.split_ascii_whitespace()
        .next()
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0.0, |k| k * 1024.0)
}

impl SmapsSum {
    pub(crate) fn line(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("Rss:") {
            self.current.rss = kib(rest);
            self.total.rss += self.current.rss;
            if self.current.stack {
                self.total.stacks += self.current.rss;
            }
        } else if let Some(rest) = line.strip_prefix("Anonymous:") {
            self.total.anonymous += kib(rest);
        } else if let Some(header) = header(line) {
            let prev = std::mem::take(&mut self.current);
            let follows_guard = prev.guard && prev.end == header.start;
            self.current = Mapping {
                end: header.end,
                // A thread's guard is a page or a few; glibc's malloc
                // arenas reserve megabytes no-access above their heaps,
                // and whatever is mapped next above those is no stack.
                guard: header.perms.starts_with("---")
                    && header.anonymous
                    && header.end - header.start <= MAX_GUARD,
                stack: header.path == "[stack]"
                    || (follows_guard && header.anonymous && header.perms.starts_with("rw")),
                rss: 0.0,
            };
        }
    }

    pub(crate) fn finish(self) -> Smaps {
        self.total
    }
}

struct Header<'a> {
    start: u64,
    end: u64,
    perms: &'a str,
    anonymous: bool,
    path: &'a str,
}

/// `7f12a000-7f12b000 rw-p 00000000 00:00 0    [path]`; field lines start
/// with a capitalised name and a colon, never with a hex range.
fn header(line: &str) -> Option<Header<'_>> {
    let mut f = line.split_ascii_whitespace();
    let (start, end) = f.next()?.split_once('-')?;
    let (start, end) = (
        u64::from_str_radix(start, 16).ok()?,
        u64::from_str_radix(end, 16).ok()?,
    );
    let perms = f.next()?;
    let inode = f.nth(2)?;
    let path = f.next().unwrap_or("");
    Some(Header {
        start,
        end,
        perms,
        anonymous: inode == "0" && (path.is_empty() || path.starts_with('[')),
        path,
    })
}

/// Reads smaps within its budget ([`COST_SHARE`]) and splits each
/// sample's RSS into its parts.
pub(crate) struct RssParts {
    smaps: Option<KeptFile>,
    /// The last read, and when the next may be.
    last: Option<(Instant, Smaps)>,
}

impl RssParts {
    pub(crate) fn new() -> Self {
        RssParts {
            smaps: KeptFile::open("/proc/self/smaps"),
            last: None,
        }
    }

    fn read(&self) -> Option<Smaps> {
        let mut sum = SmapsSum::default();
        self.smaps
            .as_ref()?
            .for_each_line(|l| {
                if let Ok(l) = std::str::from_utf8(l) {
                    sum.line(l);
                }
            })
            .ok()?;
        Some(sum.finish()).filter(|s| s.rss > 0.0)
    }

    /// Adds the parts to a sample that holds jemalloc's stats and RSS.
    pub(crate) fn sample(&mut self, now: Instant, out: &mut Metrics) {
        if self.last.is_none_or(|(next, _)| now >= next) {
            // The cost is this thread's CPU time, not the wall clock: on a
            // busy host the read waits for a core, which costs nothing,
            // and would make the next read needlessly late.
            let before = thread_cpu();
            if let Some(s) = self.read() {
                let cost = thread_cpu()
                    .saturating_sub(before)
                    .min(Duration::from_secs(1));
                self.last = Some((Instant::now() + cost * COST_SHARE, s));
            }
        }
        if let Some((_, smaps)) = self.last {
            split(&smaps, out);
        }
    }
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

/// The parts, which add up to RSS: what jemalloc holds (the heap, its
/// fragmentation, its metadata, its free pages), thread stacks, the rest
/// of anonymous memory (outside the allocator) and file-backed pages.
/// smaps may be older than the sample: its shares of RSS (anonymous,
/// stacks) are applied to this sample's RSS.
///
/// jemalloc's `resident` may count pages that are not resident (its
/// manual says so: untouched metadata, purged pages), so its parts are
/// fitted into the anonymous memory the kernel counts, in order: the
/// heap, fragmentation, metadata, then free pages, each at most what is
/// left. What is left after them is outside the allocator.
pub(crate) fn split(smaps: &Smaps, out: &mut Metrics) {
    let get = |m: &str| out.get(m).copied();
    let (Some(rss), Some(allocated), Some(active), Some(metadata), Some(resident)) = (
        get(metric::RSS),
        get(metric::HEAP_ALLOCATED),
        get(metric::HEAP_ACTIVE),
        get(metric::HEAP_METADATA),
        get(metric::HEAP_RESIDENT),
    ) else {
        return;
    };
    // smaps's shares, applied to this sample's RSS: growth since it was
    // read is spread as RSS was made up then, rather than all of it
    // counted outside the allocator until the next read.
    let file = (rss * (1.0 - smaps.anonymous / smaps.rss)).clamp(0.0, rss);
    let stacks = (rss * smaps.stacks / smaps.rss).min(rss - file);
    let mut left = rss - file - stacks;
    let mut fit = |v: f64| {
        let v = v.clamp(0.0, left);
        left -= v;
        v
    };
    let parts = [
        (metric::RSS_PART_HEAP, fit(allocated)),
        (metric::RSS_PART_FRAGMENTATION, fit(active - allocated)),
        (metric::RSS_PART_ALLOCATOR_METADATA, fit(metadata)),
        (
            metric::RSS_PART_ALLOCATOR_FREE,
            fit(resident - active - metadata),
        ),
        (metric::RSS_PART_OUTSIDE, left),
        (metric::RSS_PART_STACKS, stacks),
        (metric::RSS_PART_FILE, file),
    ];
    for (part, v) in parts {
        out.insert(part.to_owned(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r-xp 00000000 08:01 1234    /usr/bin/svc
Rss:                 512 kB
Anonymous:             0 kB
7f0000000000-7f0000001000 ---p 00000000 00:00 0
Rss:                   0 kB
Anonymous:             0 kB
7f0000001000-7f0000201000 rw-p 00000000 00:00 0
Rss:                  64 kB
Anonymous:            64 kB
7f1000000000-7f1004000000 rw-p 00000000 00:00 0
Rss:                4096 kB
Anonymous:          4096 kB
7f1004000000-7f1008000000 ---p 00000000 00:00 0
Rss:                   0 kB
Anonymous:             0 kB
7f1008000000-7f1009000000 rw-p 00000000 00:00 0
Rss:                1024 kB
Anonymous:          1024 kB
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                  32 kB
Anonymous:            32 kB
";

    #[test]
    fn stacks_are_the_mappings_above_a_guard_and_the_main_stack() {
        let mut sum = SmapsSum::default();
        SMAPS.lines().for_each(|l| sum.line(l));
        let s = sum.finish();
        assert_eq!(s.rss, (512.0 + 64.0 + 4096.0 + 1024.0 + 32.0) * 1024.0);
        assert_eq!(s.anonymous, (64.0 + 4096.0 + 1024.0 + 32.0) * 1024.0);
        // The arena with its reservation above it is not a stack, and
        // nor is what is mapped right above that reservation.
        assert_eq!(s.stacks, (64.0 + 32.0) * 1024.0);
    }

    /// The parts of a sample of RSS 100 with jemalloc's `[allocated,
    /// active, metadata, resident]`, split by `smaps`; checks they add up.
    fn parts(jemalloc: [f64; 4], smaps: Smaps) -> Metrics {
        let mut m: Metrics = [
            metric::HEAP_ALLOCATED,
            metric::HEAP_ACTIVE,
            metric::HEAP_METADATA,
            metric::HEAP_RESIDENT,
        ]
        .into_iter()
        .zip(jemalloc)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        m.insert(metric::RSS.into(), 100.0);
        split(&smaps, &mut m);
        let sum: f64 = metric::RSS_PARTS.iter().map(|p| m[*p]).sum();
        assert!((sum - 100.0).abs() < 1e-9, "{m:?}");
        m
    }

    #[test]
    fn allocator_figures_beyond_the_anonymous_memory_are_trimmed() {
        let smaps = Smaps {
            rss: 100.0,
            anonymous: 20.0,
            stacks: 2.0,
        };
        let m = parts([5.0, 6.0, 30.0, 36.0], smaps);
        assert_eq!(m[metric::RSS_PART_HEAP], 5.0);
        assert_eq!(m[metric::RSS_PART_FRAGMENTATION], 1.0);
        let metadata = m[metric::RSS_PART_ALLOCATOR_METADATA];
        assert!((metadata - 12.0).abs() < 1e-9, "{m:?}");
        assert_eq!(m[metric::RSS_PART_OUTSIDE], 0.0);
    }

    #[test]
    fn the_parts_add_up_to_rss() {
        let smaps = Smaps {
            rss: 100.0,
            anonymous: 80.0,
            stacks: 10.0,
        };
        let m = parts([30.0, 40.0, 5.0, 50.0], smaps);
        assert!((m[metric::RSS_PART_OUTSIDE] - 20.0).abs() < 1e-9, "{m:?}");
        assert!((m[metric::RSS_PART_FILE] - 20.0).abs() < 1e-9, "{m:?}");
        assert_eq!(m[metric::RSS_PART_FRAGMENTATION], 10.0);
    }
}
