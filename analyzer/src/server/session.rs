//! Signed session cookies, so that a browser signed in at one analyzer is
//! signed in at every analyzer behind the same balancer.
//!
//! A cookie is `v1:EXPIRES:TOKEN:TAG`: when it ends (Unix seconds), the
//! name of the token that signed in, and an HMAC-SHA256 of both under a
//! key every analyzer shares (`--session-key-file`). Nothing is kept in
//! memory, so a restart signs no one out. A session lasts 12 hours, and
//! no longer than its token: a reload that removes the token or takes
//! away its reading ends it at once.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// How long a browser stays signed in.
pub const LIFETIME_S: u64 = 12 * 3600;
/// Longest cookie value looked at; a real one is under 120 bytes.
const MAX_COOKIE: usize = 256;
/// Shortest key read from a file.
const MIN_KEY: usize = 32;

/// The key sessions are signed with.
pub struct SessionKey {
    key: Vec<u8>,
    /// Where the key came from, for `Debug`: the file, or "random".
    origin: String,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey({}, <redacted>)", self.origin)
    }
}

impl SessionKey {
    /// A key of this process alone: its sessions end when it does, and
    /// other analyzers do not accept them.
    ///
    /// # Errors
    /// No randomness from the OS.
    pub fn random() -> Result<Self> {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| Error::invalid("session_key_file", format!("no randomness: {e}")))?;
        Ok(SessionKey {
            key,
            origin: "random".into(),
        })
    }

    /// The key in `path`, shared by the analyzers behind one balancer.
    ///
    /// # Errors
    /// A file that cannot be read, or holds fewer than 32 bytes.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = crate::config::read_bounded(path, 4096)
            .map_err(|e| Error::invalid("session-key-file", format!("{}: {e}", path.display())))?;
        let key = text.trim().as_bytes().to_vec();
        if key.len() < MIN_KEY {
            return Err(Error::invalid(
                "session-key-file",
                format!(
                    "{} holds {} bytes; use {MIN_KEY} or more (openssl rand -hex 32)",
                    path.display(),
                    key.len()
                ),
            ));
        }
        Ok(SessionKey {
            key,
            origin: path.display().to_string(),
        })
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; the error is unreachable, and
        // a fixed key keeps the function total.
        HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| HmacSha256::new_from_slice(b"heaptide").expect("a fixed key"))
    }

    /// A cookie value for `token`, ending at `expires_s`.
    pub fn sign(&self, token: &str, expires_s: u64) -> String {
        let payload = format!("v1:{expires_s}:{token}");
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let tag: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{payload}:{tag}")
    }

    /// The token name of a cookie this key signed, if it has not ended
    /// by `now_s`. Any other input, however shaped, is `None`.
    pub fn verify<'c>(&self, cookie: &'c str, now_s: u64) -> Option<&'c str> {
        if cookie.len() > MAX_COOKIE {
            return None;
        }
        let (payload, tag) = cookie.rsplit_once(':')?;
        let mut parts = payload.splitn(3, ':');
        let (version, expires, token) = (parts.next()?, parts.next()?, parts.next()?);
        if version != "v1" || tag.len() != 64 {
            return None;
        }
        let tag = hex(tag)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        // Constant time: a forger learns nothing from when it fails.
        mac.verify_slice(&tag).ok()?;
        let expires: u64 = expires.parse().ok()?;
        (now_s < expires && expires <= now_s.saturating_add(LIFETIME_S + 60)).then_some(token)
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    b.chunks(2)
        .map(|p| {
            let d = |c: u8| (c as char).to_digit(16);
            Some((d(*p.first()?)? * 16 + d(*p.get(1)?)?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_cookie_verifies_until_it_ends_and_not_under_another_key() {
        let k = SessionKey::random().unwrap();
        let c = k.sign("grafana", 1_000 + LIFETIME_S);
        assert_eq!(k.verify(&c, 1_000), Some("grafana"));
        assert_eq!(k.verify(&c, 1_000 + LIFETIME_S), None, "ended");
        assert_eq!(SessionKey::random().unwrap().verify(&c, 1_000), None);
        let forged = c.replace("grafana", "admin");
        assert_eq!(k.verify(&forged, 1_000), None);
        let longer = k.sign("grafana", 1_000 + LIFETIME_S * 10);
        assert_eq!(k.verify(&longer, 1_000), None, "no longer than a lifetime");
        for junk in [
            "",
            ":",
            "v1::",
            "v1:1:a:zz",
            &c[..c.len() - 1],
            &format!("{c}0"),
        ] {
            assert_eq!(k.verify(junk, 1_000), None, "{junk:?}");
        }
    }
}
