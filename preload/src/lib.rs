//! `libheaptide_preload.so`: the heaptide agent for any dynamically linked
//! process, Rust or not, with no rebuild:
//!
//! ```text
//! LD_PRELOAD=/path/to/libheaptide_preload.so HEAPTIDE_ENDPOINT=http://analyzer:4318 ./any-service
//! ```
//!
//! The library carries its own jemalloc, built with profiling, and puts it
//! under every C and C++ allocation function of the process (`alloc`), so
//! the whole heap is sampled with stacks from the first allocation, before
//! `main` and before the agent runs. A constructor then starts the same
//! agent a Rust service links (`heaptide-agent`): fds, threads, sockets,
//! limits, pauses and heap profiles, streamed to the analyzer and set by
//! the same `HEAPTIDE_*` variables.
//!
//! Where it steps aside:
//! - **setuid and setgid programs** (`AT_SECURE`): the agent does not
//!   start. glibc already ignores a preload path there; this is the
//!   second lock on that door.
//! - **a process that links the agent itself**: its own agent sees its
//!   Rust heap, which this one cannot, so when it starts it calls
//!   [`heaptide_preload_hand_over`] and this agent stops, or never starts
//!   (a program that takes more than [`START_DELAY`] to start its own
//!   finds this one running for that long, under the same names).
//! - **short-lived processes**: the agent starts after [`START_DELAY`], so
//!   a shell or a helper that a preloaded service execs, and that exits at
//!   once, sends nothing. Its heap was sampled from the start anyway.
//! - **a forked child that does not exec** has none of the agent's threads
//!   and runs without it (the agent's fork handling keeps its allocation
//!   hooks safe there). A child that execs loads this library afresh.
//!
//! Stacks are recorded with libgcc's unwinder unless `HEAPTIDE_UNWINDER`
//! says otherwise: C and C++ code is seldom built with frame pointers, and
//! the agent's probe for them can only test its own code.

mod alloc;

use std::sync::Mutex;
use std::time::Duration;

/// How long a process runs before its agent starts.
pub const START_DELAY: Duration = Duration::from_secs(1);

/// jemalloc's options, read from this symbol at its first allocation:
/// sampling on from the start, at the agent's default period.
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

enum State {
    /// Waiting out [`START_DELAY`].
    Pending,
    /// The agent, and the process that started it.
    Running(heaptide_agent::Agent, u32),
    /// Stopped, handed over, refused or failed: never started again.
    Done,
}

static STATE: Mutex<State> = Mutex::new(State::Pending);

// The loader runs the functions of `.init_array` when it loads the
// library, before the program's `main`, and those of `.fini_array` from
// `exit`.
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = fini;

extern "C" fn init() {
    // SAFETY: getauxval reads the auxiliary vector the kernel gave us.
    if unsafe { libc::getauxval(libc::AT_SECURE) } != 0 {
        refuse("a setuid or setgid program");
        return;
    }
    heaptide_agent::__preloaded();
    let spawned = std::thread::Builder::new()
        .name("heaptide-start".into())
        .spawn(|| {
            std::thread::sleep(START_DELAY);
            start();
        });
    if let Err(e) = spawned {
        refuse(&format!("no thread to start it from ({e})"));
    }
}

fn refuse(why: &str) {
    eprintln!("heaptide: the preloaded agent does not run in {why}");
    if let Ok(mut s) = STATE.lock() {
        *s = State::Done;
    }
}

fn start() {
    let Ok(mut state) = STATE.lock() else {
        return;
    };
    if !matches!(*state, State::Pending) {
        return;
    }
    let from_env = |key: &str| match std::env::var(key) {
        Ok(v) => Some(v),
        Err(_) if key == "HEAPTIDE_UNWINDER" => Some("libgcc".into()),
        Err(_) => None,
    };
    *state = match heaptide_agent::builder()
        .build_with(from_env)
        .and_then(heaptide_agent::Agent::start)
    {
        Ok(agent) => State::Running(agent, std::process::id()),
        Err(e) => {
            eprintln!("heaptide: the preloaded agent did not start: {e}");
            State::Done
        }
    };
}

/// Stops the agent, whatever its state, and says it will not start again.
/// `wait` for a start under way; at exit it does not, as a forked child may
/// have copied the lock held, and then does without.
fn stop(wait: bool) {
    let locked = if wait {
        STATE.lock().ok()
    } else {
        STATE.try_lock().ok()
    };
    let Some(mut state) = locked else {
        return;
    };
    if let State::Running(agent, pid) = std::mem::replace(&mut *state, State::Done) {
        drop(state);
        if pid == std::process::id() {
            // Its last sample says it stopped, and is sent within the
            // shutdown timeout.
            agent.shutdown();
        } else {
            // A forked child's copy: its threads are the parent's, so
            // nothing of it is touched, not even to be freed.
            std::mem::forget(agent);
        }
    }
}

extern "C" fn fini() {
    stop(false);
}

/// Called by an agent linked into the program when it starts: that agent
/// sees the program's own heap, so this one stops, or never starts.
#[no_mangle]
pub extern "C" fn heaptide_preload_hand_over() {
    stop(true);
}
