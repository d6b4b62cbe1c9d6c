//! Tokens and what each may do (`docs/security.md`, "Tokens").
//!
//! Three kinds: `ingest` sends batches, for every service or only for the
//! ones it names; `read` reads the pages, the read API and `/metrics`;
//! `admin` does both. The agent carries an ingest token, so a host that
//! leaks its token leaks no data and can write only as its own services.
//!
//! Tokens come from files (`--token-file` for ingest, `--read-token-file`,
//! `--admin-token-file`, and `--tokens-file` for any number of named,
//! scoped tokens) and are read again on SIGHUP: see [`TokenSource`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Ingest,
    Read,
    Admin,
}

/// One token. Its `Debug` leaves the secret out.
#[derive(Clone)]
pub struct Token {
    /// Its name, in logs, session cookies and the rate limit's key.
    pub name: String,
    pub kind: Kind,
    secret: String,
    /// For an ingest token, the only services it may send for.
    pub services: Option<Arc<BTreeSet<String>>>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl Token {
    pub fn reads(&self) -> bool {
        matches!(self.kind, Kind::Read | Kind::Admin)
    }

    /// Whether it may send batches for `service`.
    pub fn ingests(&self, service: &str) -> bool {
        match self.kind {
            Kind::Read => false,
            Kind::Admin => true,
            Kind::Ingest => self.services.as_ref().is_none_or(|s| s.contains(service)),
        }
    }

    pub fn ingests_any(&self) -> bool {
        self.kind != Kind::Read
    }
}

/// Every token in force. Empty: no authentication (loopback only).
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    tokens: Vec<Arc<Token>>,
}

/// Longest token file read.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Shortest secret a tokens file may hold.
const MIN_SECRET: usize = 16;
/// Most tokens one set may hold: each request compares against all.
const MAX_TOKENS: usize = 10_000;

/// `--tokens-file`: `[[token]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<FileToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToken {
    name: String,
    kind: Kind,
    secret: String,
    services: Option<Vec<String>>,
}

impl TokenSet {
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// The token whose secret is `presented`. Every secret is compared,
    /// each in constant time, so the answer's timing names no token.
    pub fn find(&self, presented: &str) -> Option<Arc<Token>> {
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.secret.as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(t.clone());
            }
        }
        found
    }

    pub fn named(&self, name: &str) -> Option<Arc<Token>> {
        self.tokens.iter().find(|t| t.name == name).cloned()
    }

    /// Parses a tokens file's text: the fuzzed decoder.
    ///
    /// # Errors
    /// The first problem, named: TOML, an unknown key, an empty or
    /// duplicate name, a short secret, or services on a kind that does not
    /// ingest.
    pub fn parse(text: &str) -> std::result::Result<Vec<Token>, String> {
        let file: TokensFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.token.len() > MAX_TOKENS {
            return Err(format!("more than {MAX_TOKENS} tokens"));
        }
        file.token.into_iter().map(checked).collect()
    }

    fn push(&mut self, t: Token) -> std::result::Result<(), String> {
        if self.named(&t.name).is_some() {
            return Err(format!("two tokens are named {:?}", t.name));
        }
        if self.tokens.iter().any(|o| o.secret == t.secret) {
            return Err(format!("token {:?} has the same secret as another", t.name));
        }
        self.tokens.push(Arc::new(t));
        Ok(())
    }
}

fn checked(f: FileToken) -> std::result::Result<Token, String> {
    let name_ok = !f.name.is_empty()
        && f.name.len() <= 64
        && f.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !name_ok {
        return Err(format!(
            "token name {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
            f.name
        ));
    }
    if f.secret.chars().count() < MIN_SECRET || f.secret.trim() != f.secret {
        return Err(format!(
            "token {:?}: its secret must be {MIN_SECRET} characters or more, with no spaces around",
            f.name
        ));
    }
    let services = match (f.kind, f.services) {
        (_, None) => None,
        (Kind::Ingest, Some(s)) if !s.is_empty() => Some(Arc::new(s.into_iter().collect())),
        (Kind::Ingest, Some(_)) => {
            return Err(format!(
                "token {:?}: services is empty; leave it out for every service",
                f.name
            ))
        }
        (_, Some(_)) => {
            return Err(format!(
                "token {:?}: only an ingest token takes services",
                f.name
            ))
        }
    };
    Ok(Token {
        name: f.name,
        kind: f.kind,
        secret: f.secret,
        services,
    })
}

/// Where the tokens come from, kept so that SIGHUP can read them again.
#[derive(Debug, Clone, Default)]
pub struct TokenSource {
    /// The ingest token, for every service (`--token-file`).
    pub token_file: Option<PathBuf>,
    pub read_token_file: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    /// Named, scoped tokens (`--tokens-file`).
    pub tokens_file: Option<PathBuf>,
    /// `HEAPTIDE_TOKEN` and `HEAPTIDE_READ_TOKEN`, when no file is named.
    pub env_token: Option<String>,
    pub env_read_token: Option<String>,
}

impl TokenSource {
    /// Reads every source.
    ///
    /// # Errors
    /// A file that cannot be read or parsed, a short or duplicate secret:
    /// named, with the setting it came from.
    pub fn load(&self) -> Result<TokenSet> {
        let mut set = TokenSet::default();
        let single = [
            (
                "token_file",
                "ingest",
                Kind::Ingest,
                &self.token_file,
                &self.env_token,
            ),
            (
                "read_token_file",
                "read",
                Kind::Read,
                &self.read_token_file,
                &self.env_read_token,
            ),
            (
                "admin_token_file",
                "admin",
                Kind::Admin,
                &self.admin_token_file,
                &None,
            ),
        ];
        for (key, name, kind, file, env) in single {
            let secret = match (file, env) {
                (Some(path), _) => Some(read_secret(key, path)?),
                (None, Some(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            };
            if let Some(secret) = secret {
                let t = Token {
                    name: name.into(),
                    kind,
                    secret,
                    services: None,
                };
                set.push(t).map_err(|e| Error::invalid(key, e))?;
            }
        }
        if let Some(path) = &self.tokens_file {
            let text = crate::config::read_bounded(path, MAX_FILE_BYTES)
                .map_err(|e| Error::invalid("tokens_file", format!("{}: {e}", path.display())))?;
            let parsed = TokenSet::parse(&text)
                .map_err(|e| Error::invalid("tokens_file", format!("{}: {e}", path.display())))?;
            for t in parsed {
                set.push(t).map_err(|e| {
                    Error::invalid("tokens_file", format!("{}: {e}", path.display()))
                })?;
            }
        }
        Ok(set)
    }
}

fn read_secret(key: &str, path: &std::path::Path) -> Result<String> {
    let flag = key.replace('_', "-");
    let t = crate::config::read_bounded(path, 4096)
        .map_err(|e| Error::invalid(&flag, format!("{}: {e}", path.display())))?;
    let t = t.trim().to_owned();
    if t.is_empty() {
        return Err(Error::invalid(
            &flag,
            format!("{} is empty", path.display()),
        ));
    }
    if t.len() < MIN_SECRET {
        // Guessable by brute force over the sign-in form, which is
        // throttled; allowed, as a test's token is, but said.
        tracing::warn!(
            "{flag}: the token in {} is shorter than {MIN_SECRET} characters; use 32 random characters or more",
            path.display()
        );
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[token]]
name = "billing-agents"
kind = "ingest"
secret = "0123456789abcdef-billing"
services = ["billing", "invoices"]

[[token]]
name = "grafana"
kind = "read"
secret = "0123456789abcdef-grafana"
"#;

    #[test]
    fn a_tokens_file_scopes_ingest_by_service_and_kind() {
        let mut set = TokenSet::default();
        for t in TokenSet::parse(FILE).unwrap() {
            set.push(t).unwrap();
        }
        let billing = set.find("0123456789abcdef-billing").unwrap();
        assert!(billing.ingests("billing") && billing.ingests("invoices"));
        assert!(!billing.ingests("payroll") && !billing.reads());
        let grafana = set.find("0123456789abcdef-grafana").unwrap();
        assert!(grafana.reads() && !grafana.ingests_any());
        assert!(set.find("0123456789abcdef-grafan").is_none());
        assert_eq!(set.named("grafana").unwrap().kind, Kind::Read);
    }

    #[test]
    fn bad_tokens_files_name_their_problem() {
        for (text, says) in [
            ("[[token]]\nname = \"a\"\nkind = \"read\"\nsecret = \"short\"", "16 characters"),
            ("[[token]]\nname = \"a b\"\nkind = \"read\"\nsecret = \"0123456789abcdef\"", "letters, digits"),
            ("[[token]]\nname = \"a\"\nkind = \"read\"\nsecret = \"0123456789abcdef\"\nservices = [\"x\"]", "only an ingest"),
            ("[[token]]\nname = \"a\"\nkind = \"ingest\"\nsecret = \"0123456789abcdef\"\nservices = []", "services is empty"),
            ("[[token]]\nname = \"a\"\nkind = \"root\"\nsecret = \"0123456789abcdef\"", "unknown variant"),
            ("[[token]]\nname = \"a\"\nkind = \"read\"\nsecret = \"0123456789abcdef\"\nextra = 1", "unknown field"),
        ] {
            let e = TokenSet::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        let mut set = TokenSet::default();
        for t in
            TokenSet::parse(&format!("{FILE}{}", FILE.replace("-billing\"", "-other\""))).unwrap()
        {
            if let Err(e) = set.push(t) {
                assert!(e.contains("two tokens are named"), "{e}");
                return;
            }
        }
        panic!("a duplicate name was accepted");
    }
}
