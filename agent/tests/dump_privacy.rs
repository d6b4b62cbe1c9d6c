//! Heap dumps never touch the file system: with the temporary directory
//! gone, the dumps a leak check takes still work, because they go through
//! an anonymous in-memory file (`memfd_create`) that no other user can
//! read, predict or replace with a link.

heaptide_agent::global_allocator!();

use std::sync::Mutex;

use heaptide_agent::testing::{LeakCheck, LeakCheckError};

static KEPT: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

#[inline(never)]
fn keep_one_kib_forever() {
    let buf = vec![7u8; 1024].into_boxed_slice();
    KEPT.lock().unwrap().push(std::hint::black_box(buf));
}

#[test]
fn dumps_need_no_temporary_directory() {
    let gone = std::env::temp_dir().join("heaptide-no-such-dir");
    assert!(!gone.exists());
    // The only test in this binary: nothing else reads the variable.
    std::env::set_var("TMPDIR", &gone);
    let err = LeakCheck::new("keeps a KiB")
        .run(keep_one_kib_forever)
        .unwrap_err();
    assert!(
        matches!(err, LeakCheckError::Leak { .. }),
        "the leak was found from dumps: {err}"
    );
    assert!(!gone.exists(), "nothing was created");
}
