//! A sampled allocation on a signal's alternate stack, where the
//! frame-pointer walk reads nothing, is unwound by jemalloc's libgcc walk
//! instead of being recorded as an empty stack.

heaptide_agent::global_allocator!();

use std::time::Duration;

/// A size no other allocation of this test has, to find its stack.
const SIZE: usize = 777_777;

extern "C" fn on_signal(_: libc::c_int) {
    // Allocating in a handler is unsafe in general; here the signal is
    // raised synchronously by the test itself, between allocations.
    std::mem::forget(std::hint::black_box(vec![7u8; SIZE]));
}

#[test]
fn an_allocation_on_an_alternate_signal_stack_is_unwound() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let agent = heaptide_agent::builder()
        .endpoint(format!("http://{}", silent.local_addr().unwrap()))
        .service("alt-stack")
        .shutdown_timeout(Duration::from_millis(200))
        .start()
        .unwrap();
    assert_eq!(
        agent.heap_profiling().unwinder.as_deref(),
        Some("frame-pointers")
    );
    heaptide_agent::testing::track_ages_of_every_allocation().unwrap();
    // Runs out this thread's countdown to its next sample, drawn at the
    // agent's period before the reset: from here every allocation is
    // sampled.
    drop(std::hint::black_box(vec![0u8; 8 << 20]));
    let alt = vec![0u8; 256 << 10].leak();
    // SAFETY: the alternate stack is leaked, so it outlives the handler;
    // the handler is a plain function; both structures are zeroed first.
    unsafe {
        let stack = libc::stack_t {
            ss_sp: alt.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: alt.len(),
        };
        assert_eq!(libc::sigaltstack(&stack, std::ptr::null_mut()), 0);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_ONSTACK;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
        assert_eq!(libc::raise(libc::SIGUSR1), 0);
    }
    let stacks = heaptide_agent::testing::dumped_stacks().unwrap();
    let ours: Vec<_> = stacks
        .iter()
        .filter(|(bytes, _)| (SIZE as u64..SIZE as u64 + 65_536).contains(bytes))
        .collect();
    assert_eq!(ours.len(), 1, "{stacks:?}");
    assert!(ours[0].1 > 0, "the stack was not unwound: {ours:?}");
    agent.shutdown();
}
