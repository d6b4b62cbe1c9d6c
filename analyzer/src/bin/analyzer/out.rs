//! Writing a command's answer to stdout.
//!
//! `print!` panics when stdout is closed (`analyzer leaks | head`). A
//! reader that stops early wanted no more, so a broken pipe ends the
//! output quietly and the command keeps its exit code; any other write
//! error is an error.

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout, as it is.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(anyhow::Error::new(e).context("stdout")),
        _ => Ok(()),
    }
}

/// Writes `text` and a newline to stdout.
pub fn println(text: &str) -> anyhow::Result<()> {
    print(&format!("{text}\n"))
}
