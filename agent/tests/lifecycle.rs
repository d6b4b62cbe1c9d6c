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
    // Once stopped, another agent may start.
    let again = heaptide_agent::builder()
        .endpoint("http://127.0.0.1:9")
        .start()
        .unwrap();
    drop(again);
}
