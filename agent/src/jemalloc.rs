//! Everything that talks to jemalloc through `mallctl`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::Mutex;

use tikv_jemalloc_ctl::{epoch, raw, stats, thread};

use crate::error::{Error, Result};
use heaptide_wire::metric;

/// Serializes `prof.dump` process-wide: jemalloc's dump walks every
/// profiling context under its own locks, and two overlapping dumps would
/// only double that cost.
pub(crate) static DUMP_LOCK: Mutex<()> = Mutex::new(());

fn ctl_err(name: &'static str) -> impl Fn(tikv_jemalloc_ctl::Error) -> Error {
    move |e| Error::Jemalloc {
        name,
        message: e.to_string(),
    }
}

/// Adds jemalloc's global statistics to `out`.
pub(crate) fn read_stats(out: &mut BTreeMap<String, f64>) -> Result<()> {
    // Statistics are cached; advancing the epoch refreshes them.
    epoch::advance().map_err(ctl_err("epoch"))?;
    type Read = fn() -> tikv_jemalloc_ctl::Result<usize>;
    let pairs: [(&str, Read); 6] = [
        (metric::HEAP_ALLOCATED, stats::allocated::read),
        (metric::HEAP_ACTIVE, stats::active::read),
        (metric::HEAP_RESIDENT, stats::resident::read),
        (metric::HEAP_MAPPED, stats::mapped::read),
        (metric::HEAP_RETAINED, stats::retained::read),
        (metric::HEAP_METADATA, stats::metadata::read),
    ];
    for (name, read) in pairs {
        let v = read().map_err(ctl_err("stats"))?;
        out.insert(name.to_owned(), v as f64);
    }
    Ok(())
}

/// Bytes this thread has allocated and freed through jemalloc, ever.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadCounters {
    pub allocated: u64,
    pub deallocated: u64,
}

/// Reads this thread's jemalloc counters. `None` when jemalloc was built
/// without statistics.
pub fn thread_counters() -> Option<ThreadCounters> {
    let a = thread::allocatedp::read().ok()?;
    let d = thread::deallocatedp::read().ok()?;
    Some(ThreadCounters {
        allocated: a.get(),
        deallocated: d.get(),
    })
}

/// Whether jemalloc serves this program's allocations and samples them.
#[derive(Debug, Clone)]
pub(crate) enum ProfilingState {
    On,
    Off(String),
}

/// Finds out whether heap profiles can be taken, and why not.
pub(crate) fn profiling_state() -> ProfilingState {
    if !is_global_allocator() {
        return ProfilingState::Off(
            "jemalloc is not the global allocator; add heaptide_agent::global_allocator!() to main.rs"
                .into(),
        );
    }
    // SAFETY: `opt.prof` is a read-only bool; jemalloc writes a `bool` into
    // the `T = bool` buffer that `raw::read` provides.
    match unsafe { raw::read::<bool>(b"opt.prof\0") } {
        Err(e) => {
            return ProfilingState::Off(format!(
                "jemalloc was built without profiling (opt.prof: {e}); enable the tikv-jemallocator feature \"profiling\""
            ))
        }
        Ok(false) => {
            return ProfilingState::Off(
                "jemalloc profiling was not switched on at start-up; set malloc_conf \"prof:true\" (heaptide_agent::global_allocator!() does) or _RJEM_MALLOC_CONF=prof:true"
                    .into(),
            )
        }
        Ok(true) => {}
    }
    // SAFETY: `prof.active` is a bool; reading it has no side effects.
    match unsafe { raw::read::<bool>(b"prof.active\0") } {
        Ok(true) => {}
        Ok(false) => {
            return ProfilingState::Off(
                "jemalloc profiling is compiled in but inactive (prof.active is false)".into(),
            )
        }
        Err(e) => return ProfilingState::Off(format!("reading prof.active failed: {e}")),
    }
    match lg_sample() {
        Ok(_) => ProfilingState::On,
        Err(e) => ProfilingState::Off(e.to_string()),
    }
}

fn lg_sample() -> Result<usize> {
    // SAFETY: `prof.lg_sample` is a size_t that jemalloc copies into our
    // `usize` buffer.
    unsafe { raw::read::<usize>(b"prof.lg_sample\0") }.map_err(ctl_err("prof.lg_sample"))
}

/// The mean sampling period in bytes.
#[cfg(feature = "testing")]
pub(crate) fn sample_period() -> Result<u64> {
    Ok(1u64 << lg_sample()?)
}

/// Sets the mean sampling period to the power of two nearest `period`.
/// jemalloc can only change it by resetting all profile data, so this is a
/// no-op when the period already matches.
pub(crate) fn set_sample_period(period: u64) -> Result<u64> {
    let want = (period.max(1) as f64).log2().round() as usize;
    let want = want.min(40);
    if lg_sample()? != want {
        let _dump = DUMP_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: `prof.reset` takes a size_t: the new lg_sample. It drops
        // the sampled contexts, which no other code of ours holds.
        unsafe { raw::write::<usize>(b"prof.reset\0", want) }.map_err(ctl_err("prof.reset"))?;
    }
    let period = 1u64 << lg_sample()?;
    crate::allocs::set_period(period);
    Ok(period)
}

/// jemalloc counts what goes through it per thread; if an allocation made
/// here does not move that count, the program allocates elsewhere.
pub(crate) fn is_global_allocator() -> bool {
    let Some(before) = thread_counters() else {
        return false;
    };
    let probe = std::hint::black_box(vec![0u8; 4096]);
    let after = thread_counters().unwrap_or_default();
    drop(probe);
    after.allocated >= before.allocated + 4096
}

/// One stack of a raw dump: return addresses, leaf first, and the counts
/// jemalloc wrote for it.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RawStack {
    pub addrs: Vec<u64>,
    pub objects: u64,
    pub bytes: u64,
    /// Allocated since the previous profile ([`crate::allocs`]); the dump
    /// itself has no such counts.
    pub alloc_objects: u64,
    pub alloc_bytes: u64,
}

/// Asks jemalloc to write its sampled live heap and reads it back.
pub(crate) fn dump() -> Result<(u64, Vec<RawStack>)> {
    dump_for(None)
}

/// Like [`dump`], counting only what the thread named `thread` (through
/// `thread.prof.name`) allocated and still holds.
pub(crate) fn dump_for(thread: Option<&str>) -> Result<(u64, Vec<RawStack>)> {
    use std::io::{Read, Seek};
    // The dump goes to an anonymous in-memory file that only this process
    // holds: no path in a shared directory for another user to read,
    // predict or plant a link at. jemalloc opens it by its /proc name.
    let fd =
        nix::sys::memfd::memfd_create(c"heaptide-heap", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| Error::DumpRead(e.into()))?;
    let mut file = std::fs::File::from(fd);
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    let c_path = CString::new(path)
        .map_err(|_| Error::DumpRead(std::io::Error::other("dump path contains NUL")))?;
    let mut text = String::new();
    {
        let _dump = DUMP_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: `prof.dump` takes a `const char *` naming the file to
        // write; `c_path` is NUL-terminated and outlives the call.
        unsafe { raw::write(b"prof.dump\0", c_path.as_ptr()) }.map_err(ctl_err("prof.dump"))?;
    }
    file.rewind().map_err(Error::DumpRead)?;
    file.take(MAX_DUMP_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(Error::DumpRead)?;
    if text.len() as u64 > MAX_DUMP_BYTES {
        return Err(Error::DumpRead(std::io::Error::other(format!(
            "heap dump larger than {MAX_DUMP_BYTES} bytes"
        ))));
    }
    parse_dump_for(&text, thread)
}

/// Frames per stack: jemalloc records at most 128 (`PROF_BT_MAX`).
const MAX_DUMP_FRAMES: usize = 256;
/// Stacks per dump; each costs the agent its frames, so this bounds what
/// a dump can make the parser hold.
const MAX_DUMP_STACKS: usize = 200_000;

/// The largest dump read back: far above a real one (tens of thousands of
/// stacks), and a bound on the agent's memory if jemalloc wrote more.
const MAX_DUMP_BYTES: u64 = 64 << 20;

/// Names the calling thread in heap dumps (`thread.prof.name`).
#[cfg(feature = "testing")]
pub(crate) fn name_thread_in_dumps(name: &str) -> Result<()> {
    let c = CString::new(name).map_err(|_| Error::Jemalloc {
        name: "thread.prof.name",
        message: "name contains NUL".into(),
    })?;
    // SAFETY: `thread.prof.name` takes a `const char *`, which jemalloc
    // copies before returning; `c` outlives the call.
    unsafe { raw::write(b"thread.prof.name\0", c.as_ptr()) }.map_err(ctl_err("thread.prof.name"))
}

/// Parses jemalloc's `heap_v2` dump and unbiases its counts.
///
/// Hand-written: no maintained crate parses this format without pulling a
/// whole profiling stack in. The format is gperftools' text heap profile:
///
/// ```text
/// heap_v2/524288
///   t*: 28106: 56637512 [0: 0]
/// @ 0x4f3a 0x4e12
///   t*: 13: 6688 [0: 0]
/// ```
///
/// The period is the mean bytes between samples (R). For each stack, jemalloc
/// writes counts that jeprof scales by `1 / (1 - exp(-(bytes/objects)/R))`,
/// the inverse of the chance that an allocation of that mean size is
/// sampled; jemalloc 5.3 pre-adjusts what it writes so this classic formula
/// yields unbiased estimates.
#[cfg(test)]
pub(crate) fn parse_dump(text: &str) -> Result<(u64, Vec<RawStack>)> {
    parse_dump_for(text, None)
}

/// Parses a dump, counting all threads (`None`) or one named thread: the
/// header lists threads as `  t<uid>: <counts> <name>`, and each stack has
/// a `t<uid>:` line per thread after its `t*:` line.
pub(crate) fn parse_dump_for(text: &str, thread: Option<&str>) -> Result<(u64, Vec<RawStack>)> {
    let bad = |line: usize, reason: &str| Error::DumpParse {
        line,
        reason: reason.into(),
    };
    let mut lines = text.lines().enumerate();
    let (_, header) = lines.next().ok_or_else(|| bad(1, "empty dump"))?;
    let period: u64 = header
        .strip_prefix("heap_v2/")
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| bad(1, "expected heap_v2/<period>"))?;
    let mut stacks = Vec::new();
    let mut current: Option<Vec<u64>> = None;
    // The counts line to read: `t*` for all threads, `t<uid>` for one.
    let mut want: Option<String> = thread.is_none().then(|| "t*".to_owned());
    for (i, line) in lines {
        let lineno = i + 1;
        if current.is_none() && want.is_none() {
            // Still in the header: find the named thread's uid.
            let t = line.trim_start();
            if let (Some(name), Some((tag, _))) = (thread, t.split_once(':')) {
                if tag.starts_with('t') && t.rsplit(']').next().map(str::trim) == Some(name) {
                    want = Some(tag.to_owned());
                }
            }
        }
        if line.starts_with("MAPPED_LIBRARIES") {
            break;
        }
        // A bare `@` is a sampled stack that could not be unwound (a
        // signal or foreign stack): an empty stack, not more of the last.
        if let Some(rest) = line
            .strip_prefix('@')
            .filter(|r| r.is_empty() || r.starts_with(' '))
        {
            let addrs = rest
                .split_whitespace()
                .take(MAX_DUMP_FRAMES + 1)
                .map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| bad(lineno, "bad address"))?;
            if addrs.len() > MAX_DUMP_FRAMES {
                return Err(bad(lineno, "more frames than jemalloc records"));
            }
            if stacks.len() >= MAX_DUMP_STACKS {
                return Err(bad(lineno, "more stacks than a dump can hold"));
            }
            current = Some(addrs);
        } else if let Some((tag, rest)) = line.trim_start().split_once(':') {
            // The header's lines come before any `@` and have no stack.
            if want.as_deref() != Some(tag) {
                continue;
            }
            if let Some(addrs) = current.clone() {
                let (objects, bytes) =
                    parse_counts(rest).ok_or_else(|| bad(lineno, "bad counts"))?;
                if objects > 0 && bytes > 0 {
                    let (objects, bytes) = unbias(objects, bytes, period);
                    stacks.push(RawStack {
                        addrs,
                        objects,
                        bytes,
                        ..Default::default()
                    });
                }
            }
        }
    }
    Ok((period, stacks))
}

fn parse_counts(rest: &str) -> Option<(u64, u64)> {
    // ` 13: 6688 [0: 0]`
    let mut it = rest.split([':', '[']).map(str::trim);
    let objects = it.next()?.parse().ok()?;
    let bytes = it.next()?.parse().ok()?;
    Some((objects, bytes))
}

fn unbias(objects: u64, bytes: u64, period: u64) -> (u64, u64) {
    if period <= 1 {
        return (objects, bytes);
    }
    let mean = bytes as f64 / objects as f64;
    let scale = 1.0 / (1.0 - (-mean / period as f64).exp());
    (
        (objects as f64 * scale).round() as u64,
        (bytes as f64 * scale).round() as u64,
    )
}

/// Installs jemalloc as the global allocator with heap profiling switched
/// on (`prof:true`, sampling every 512 KiB on average). Put it at the top
/// level of `main.rs`.
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static HEAPTIDE_GLOBAL_ALLOCATOR: $crate::Jemalloc = $crate::Jemalloc;

        // jemalloc reads its options from this symbol at start-up.
        #[allow(non_upper_case_globals)]
        #[export_name = "_rjem_malloc_conf"]
        pub static heaptide_malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";
    };
}

/// The heap dump parser on `text`, for the fuzz targets: the number of
/// stacks it found, or `None` for a rejected dump.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_parse_heap_dump(text: &str) -> Option<usize> {
    parse_dump_for(text, None).ok().map(|(_, s)| s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "heap_v2/524288
  t*: 28106: 56637512 [0: 0]
  t0: 10: 100 [0: 0]
@ 0x1000 0x2000 0x3000
  t*: 1: 1048576 [0: 0]
  t3: 1: 1048576 [0: 0]
@ 0x1001 0x2000
  t*: 64: 4096 [0: 0]

MAPPED_LIBRARIES:
55d6e3a00000-55d6e3a20000 r--p 00000000 08:01 123 /bin/x
";

    #[test]
    fn dump_is_parsed_and_unbiased() {
        let (period, stacks) = parse_dump(DUMP).unwrap();
        assert_eq!(period, 524288);
        assert_eq!(stacks.len(), 2);
        assert_eq!(stacks[0].addrs, vec![0x1000, 0x2000, 0x3000]);
        // A 1 MiB allocation is sampled with probability 1 - e^-2 = 0.8647.
        assert_eq!(
            stacks[0].bytes,
            (1048576.0 / (1.0 - (-2.0f64).exp())).round() as u64
        );
        // 64-byte objects are sampled with probability ~64/R: each sampled
        // one stands for about R/64 real ones, i.e. R bytes.
        let b = stacks[1].bytes as f64;
        assert!((b / (64.0 * 524288.0) - 1.0).abs() < 0.001, "{b}");
    }

    #[test]
    fn one_named_thread_can_be_counted_alone() {
        let dump = "heap_v2/524288
  t*: 3: 3145728 [0: 0]
  t0: 1: 1048576 [0: 0] main
  t7: 2: 2097152 [0: 0] heaptide-check-3
@ 0x1000 0x2000
  t*: 3: 3145728 [0: 0]
    t0: 1: 1048576 [0: 0]
    t7: 2: 2097152 [0: 0]
@ 0x3000
  t*: 1: 64 [0: 0]
    t0: 1: 64 [0: 0]
";
        let (_, all) = parse_dump_for(dump, None).unwrap();
        assert_eq!(all.len(), 2);
        let (_, mine) = parse_dump_for(dump, Some("heaptide-check-3")).unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].addrs, vec![0x1000, 0x2000]);
        assert_eq!(mine[0].objects, unbias(2, 2097152, 524288).0);
        let (_, none) = parse_dump_for(dump, Some("nobody")).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_bare_at_is_an_empty_stack_and_not_credited_to_the_last() {
        let dump = "heap_v2/1\n@ 0x1 0x2\n  t*: 1: 100 [0: 0]\n@\n  t*: 2: 200 [0: 0]\n@ \n  t*: 3: 300 [0: 0]\n";
        let (_, stacks) = parse_dump(dump).unwrap();
        let got: Vec<(Vec<u64>, u64)> = stacks.iter().map(|s| (s.addrs.clone(), s.bytes)).collect();
        assert_eq!(got, [(vec![1, 2], 100), (vec![], 200), (vec![], 300)]);
    }

    #[test]
    fn malformed_dumps_are_errors() {
        assert!(parse_dump("").is_err());
        assert!(parse_dump("heap_v3/1\n").is_err());
        assert!(parse_dump("heap_v2/8\n@ 0xzz\n t*: 1: 2 [0: 0]\n").is_err());
        assert!(parse_dump("heap_v2/8\n@ 0x1\n t*: one: 2 [0: 0]\n").is_err());
    }
}
