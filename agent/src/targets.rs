//! What open fds and TCP sockets point at, counted by target: a path with
//! its numbers folded, a pipe, an anon inode's kind, a socket's peer. A
//! leak then names what it holds open (`/var/log/app-n.log`, connections
//! to `10.0.0.5:5432`), not only its kind.
//!
//! The count of distinct targets is bounded twice: the [`MAX_TARGETS`]
//! largest are sent each sample, the rest summed as `other`; and over the
//! process's life at most [`MAX_NAMES`] distinct targets are ever sent
//! under each prefix, later ones as `other`, so a service that opens a
//! file per request id cannot flood the store with names.

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

/// The most distinct targets ever sent under one prefix.
pub(crate) const MAX_NAMES: usize = 64;

/// The targets sent so far under each prefix.
#[derive(Default)]
pub(crate) struct Sent(HashMap<&'static str, std::collections::HashSet<String>>);

impl Sent {
    /// Adds the largest [`MAX_TARGETS`] of `counts` under `prefix`, the
    /// rest, and any new target past [`MAX_NAMES`], as `other`.
    pub(crate) fn put(
        &mut self,
        out: &mut Metrics,
        prefix: &'static str,
        counts: HashMap<String, u64>,
    ) {
        let sent = self.0.entry(prefix).or_default();
        let mut all: Vec<(String, u64)> = counts.into_iter().collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut rest: u64 = all.iter().skip(MAX_TARGETS).map(|(_, n)| n).sum();
        for (target, n) in all.into_iter().take(MAX_TARGETS) {
            if !sent.contains(&target) && sent.len() >= MAX_NAMES {
                rest += n;
                continue;
            }
            out.insert(format!("{prefix}{target}"), n as f64);
            sent.insert(target);
        }
        if rest > 0 {
            *out.entry(format!("{prefix}other")).or_default() += rest as f64;
        }
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
    fn targets_beyond_the_caps_are_summed_as_other() {
        let mut sent = Sent::default();
        let counts = (0..20)
            .map(|i| (format!("/f{i}"), 100 - i as u64))
            .collect();
        let mut out = Metrics::new();
        sent.put(&mut out, "fds.to.", counts);
        assert_eq!(out.len(), MAX_TARGETS + 1);
        assert_eq!(out["fds.to./f0"], 100.0);
        assert_eq!(out["fds.to.other"], (84 + 83 + 82 + 81) as f64);
        // A name a request id makes, new every sample: past the life cap,
        // it is counted as other.
        for i in 0..MAX_NAMES * 2 {
            let mut out = Metrics::new();
            sent.put(&mut out, "fds.to.", [(format!("/req/{i}x"), 1)].into());
            let named = out.contains_key(&format!("fds.to./req/{i}x"));
            assert_eq!(named, i + MAX_TARGETS < MAX_NAMES, "{i}: {out:?}");
        }
    }
}
