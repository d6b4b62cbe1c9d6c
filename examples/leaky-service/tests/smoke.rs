//! The example starts, serves its routes, and has heap profiling on.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_routes_with_profiling_on() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leaky-service"))
        .env("HEAPTIDE_ENDPOINT", "http://127.0.0.1:9")
        .env("LEAKY_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap()
        .to_owned();
    assert!(get(&addr, "/healthz").ends_with("ok"));
    assert!(get(&addr, "/leak?kb=1").ends_with("1\n"));
    assert!(get(&addr, "/leak?kb=1").ends_with("2\n"));
    assert!(get(&addr, "/cache?key=7").ends_with("1\n"));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("heap profiles are off"), "{err}");
}
