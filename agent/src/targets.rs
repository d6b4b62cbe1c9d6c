//! What open fds and TCP sockets point at, counted by target: a path with
//! its numbers folded, a pipe, an anon inode's kind, a socket's peer. A
//! leak then names what it holds open (`/var/log/app-n.log`, connections
//! to `10.0.0.5:5432`), not only its kind.
//!
//! The count of distinct targets is bounded: the [`MAX_TARGETS`] largest
//! are sent, the rest summed as `other`, so a service that opens a file
//! per request id cannot flood the store.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use heaptide_wire::fd_target_name;
use procfs::process::FDTarget;

use crate::process::Metrics;

/// The most targets sent per prefix and sample.
pub(crate) const MAX_TARGETS: usize = 16;

/// An fd's target, or `None` for a socket, which its peer names later.
pub(crate) fn fd_target(t: &FDTarget) -> Option<String> {
    Some(match t {
        FDTarget::Path(p) => fd_target_name(&p.to_string_lossy()),
        FDTarget::MemFD(name) => fd_target_name(&format!("memfd:{name}")),
        FDTarget::Pipe(_) => "pipe".into(),
        FDTarget::AnonInode(kind) => fd_target_name(kind),
        FDTarget::Socket(_) => return None,
        _ => "other".into(),
    })
}

/// An address of a line of `/proc/net/tcp{,6}` (hex, as the kernel writes
/// it): its IP, as `10.0.0.5` or `[::1]`, and port; `None` for no address
/// (a listening socket's peer).
pub(crate) fn address(hex: &str) -> Option<(String, u16)> {
    let (addr, port) = hex.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if port == 0 {
        return None;
    }
    let ip = match addr.len() {
        8 => Ipv4Addr::from(u32::from_str_radix(addr, 16).ok()?.swap_bytes()).to_string(),
        32 => {
            // Four 32-bit words, each in the host's (little-endian) order.
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.swap_bytes().to_be_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => format!("[{v6}]"),
            }
        }
        _ => return None,
    };
    Some((ip, port))
}

/// A socket's peer as a target: `10.0.0.5:5432`, or, for a connection
/// accepted on one of the process's listening ports, `10.0.0.7:n`, as a
/// client's port is ephemeral and would make each connection a target.
pub(crate) fn peer((ip, port): &(String, u16), accepted: bool) -> String {
    if accepted {
        format!("{ip}:n")
    } else {
        format!("{ip}:{port}")
    }
}

/// Adds the largest [`MAX_TARGETS`] of `counts` under `prefix`, the rest
/// as `other`.
pub(crate) fn put(out: &mut Metrics, prefix: &str, counts: HashMap<String, u64>) {
    let mut all: Vec<(String, u64)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest: u64 = all.iter().skip(MAX_TARGETS).map(|(_, n)| n).sum();
    for (target, n) in all.into_iter().take(MAX_TARGETS) {
        out.insert(format!("{prefix}{target}"), n as f64);
    }
    if rest > 0 {
        *out.entry(format!("{prefix}other")).or_default() += rest as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_read_from_the_kernels_hex() {
        let p = |hex, accepted| address(hex).map(|a| peer(&a, accepted));
        assert_eq!(p("0500000A:1538", false).as_deref(), Some("10.0.0.5:5432"));
        assert_eq!(p("0100007F:D431", true).as_deref(), Some("127.0.0.1:n"));
        assert_eq!(
            p("0100007F:D431", false).as_deref(),
            Some("127.0.0.1:54321")
        );
        assert_eq!(address("00000000:0000"), None);
        assert_eq!(
            p("0000000000000000FFFF00000100007F:0050", false).as_deref(),
            Some("127.0.0.1:80")
        );
        assert_eq!(
            p("00000000000000000000000001000000:01BB", false).as_deref(),
            Some("[::1]:443")
        );
    }

    #[test]
    fn targets_beyond_the_cap_are_summed_as_other() {
        let counts = (0..20)
            .map(|i| (format!("/f{i}"), 100 - i as u64))
            .collect();
        let mut out = Metrics::new();
        put(&mut out, "fds.to.", counts);
        assert_eq!(out.len(), MAX_TARGETS + 1);
        assert_eq!(out["fds.to./f0"], 100.0);
        assert_eq!(out["fds.to.other"], (84 + 83 + 82 + 81) as f64);
    }
}
