//! Fork safety: a service whose threads allocate while its main thread
//! forks (a prefork server, a daemonizing helper) gets children that run.
//! Every allocation is sampled here, so the allocator's hooks are as busy
//! as they can be when `fork` copies the process; a hook's lock copied
//! held would hang the child on its first sampled allocation.
//!
//! `HEAPTIDE_FORKS` sets the number of forks (2,000 by default; the
//! benchmark in docs/benchmarks.md runs 10,000).

heaptide_agent::global_allocator!();

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a child may take before it counts as hung: a healthy one
/// exits within milliseconds.
const HUNG_AFTER: Duration = Duration::from_secs(5);

#[inline(never)]
fn churn(seed: usize, keep: &mut Vec<Vec<u8>>) {
    let size = 16 + (seed * 7919) % 4096;
    let v = std::hint::black_box(vec![seed as u8; size]);
    if keep.len() < 512 {
        keep.push(v);
    } else {
        keep[seed % 512] = v;
    }
}

/// How a child ended.
#[derive(PartialEq)]
enum End {
    Exited,
    Failed,
    Hung,
}

/// Waits for `pid` until [`HUNG_AFTER`], and kills it then.
fn reap(pid: libc::pid_t) -> End {
    let deadline = Instant::now() + HUNG_AFTER;
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child, with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            return if ok { End::Exited } else { End::Failed };
        }
        assert!(rc == 0, "waitpid: {}", std::io::Error::last_os_error());
        if Instant::now() > deadline {
            // SAFETY: kill and reap our own child, which hung.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return End::Hung;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn children_forked_under_allocation_load_never_hang() {
    let forks: usize = std::env::var("HEAPTIDE_FORKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    // An analyzer that takes connections and says nothing: the agent's
    // threads run, as in a service, and hold what they hold at the fork.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut agent = Some(
        heaptide_agent::builder()
            .endpoint(format!("http://{}", silent.local_addr().unwrap()))
            .service("fork")
            .interval(Duration::from_millis(20))
            .shutdown_timeout(Duration::from_millis(200))
            .start()
            .unwrap(),
    );
    heaptide_agent::testing::track_ages_of_every_allocation().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut keep = Vec::new();
                let mut i = w * 1_000_003;
                while !stop.load(Ordering::Relaxed) {
                    churn(i, &mut keep);
                    i += 1;
                }
            })
        })
        .collect();
    let (mut hung, mut failed) = (0, 0);
    let started = Instant::now();
    for k in 0..forks {
        // SAFETY: the child only allocates, frees and calls `_exit`, which
        // is what a prefork server's child does first; the allocator is
        // made consistent across fork by its own and the agent's handlers.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let mut keep = Vec::new();
            for i in 0..200 {
                churn(k + i, &mut keep);
            }
            drop(keep);
            if k % 10 == 0 {
                // As a child that returns from `main` would: the agent's
                // threads are in the parent, and nothing waits for them.
                drop(agent.take());
            }
            // SAFETY: leave the child at once, without running the
            // parent's exit handlers or destructors.
            unsafe { libc::_exit(0) };
        }
        match reap(pid) {
            End::Exited => {}
            End::Failed => failed += 1,
            End::Hung => hung += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    agent.take().unwrap().shutdown();
    println!(
        "forks: {forks}, hung children: {hung}, failed: {failed}, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!((hung, failed), (0, 0), "of {forks} children");
}
