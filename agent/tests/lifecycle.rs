//! Starting and stopping the agent: one per process, bad settings are
//! errors that name the setting, and shutdown is bounded even when the
//! analyzer never answers.

heaptide_agent::global_allocator!();

use std::time::{Duration, Instant};

#[test]
fn start_errors_a_second_agent_and_a_bounded_shutdown() {
    let err = heaptide_agent::builder()
        .endpoint("ftp://nowhere")
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("HEAPTIDE_ENDPOINT"), "{err}");

    // A listener that accepts nothing: uploads hang until their timeout.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let agent = heaptide_agent::builder()
        .endpoint(format!("http://{}", black_hole.local_addr().unwrap()))
        .service("lifecycle")
        .interval(Duration::from_millis(50))
        .send_timeout(Duration::from_secs(30))
        .shutdown_timeout(Duration::from_millis(300))
        .start()
        .unwrap();
    assert!(
        agent.heap_profiling().enabled,
        "{:?}",
        agent.heap_profiling()
    );
    // The workspace builds with frame pointers, so the probe finds them.
    assert_eq!(
        agent.heap_profiling().unwinder.as_deref(),
        Some("frame-pointers")
    );
    let second = heaptide_agent::builder().start().unwrap_err();
    assert!(
        matches!(second, heaptide_agent::Error::AlreadyRunning),
        "{second}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    agent.shutdown();
    // The flush gives up at its timeout rather than wait for the upload.
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        t.elapsed()
    );
    // Once stopped, another agent may start. Its analyzer hangs up on
    // every upload: at exit it makes a few spaced attempts, not a hot loop.
    let rude = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = rude.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let log = accepted.clone();
    std::thread::spawn(move || {
        for conn in rude.incoming().take(10_000) {
            drop(conn);
            log.lock().unwrap().push(Instant::now());
        }
    });
    let again = heaptide_agent::builder()
        .endpoint(format!("http://{addr}"))
        .service("lifecycle")
        .interval(Duration::from_millis(50))
        .shutdown_timeout(Duration::from_secs(2))
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let stop = Instant::now();
    again.shutdown();
    let took = stop.elapsed();
    let at_exit = accepted
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t >= stop)
        .count();
    assert!(at_exit <= 3, "{at_exit} connections while flushing");
    assert!(took < Duration::from_millis(2500), "shutdown took {took:?}");
}

#[test]
fn settings_are_bounded_and_the_token_is_never_printed() {
    let e = heaptide_agent::builder()
        .interval(Duration::from_nanos(1))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("HEAPTIDE_INTERVAL"), "{e}");
    let e = heaptide_agent::builder()
        .queue_bytes(16usize << 10)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("one heap profile"), "{e}");
    let c = heaptide_agent::builder().token("hunter2").build().unwrap();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("redacted"),
        "{shown}"
    );
}
