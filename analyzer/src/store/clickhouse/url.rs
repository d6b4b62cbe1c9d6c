//! `clickhouse://[USER[:PASSWORD]@]HOST:PORT/DATABASE`: where the store
//! is and who the analyzer is there.

use crate::error::{Error, Result};

/// A parsed store URL. Its `Display` leaves the password out, so it can
/// be logged and shown in errors.
#[derive(Clone, PartialEq, Eq)]
pub struct ClickHouseUrl {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for ClickHouseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for ClickHouseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "clickhouse://{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

pub(crate) const SCHEME: &str = "clickhouse://";

impl ClickHouseUrl {
    /// Parses a store URL. The user defaults to `default` with no
    /// password, as ClickHouse's own does.
    pub fn parse(text: &str) -> Result<ClickHouseUrl> {
        let bad = |why: &str| {
            Error::invalid(
                "store",
                format!("{why}: expected clickhouse://[USER[:PASSWORD]@]HOST:PORT/DATABASE"),
            )
        };
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("not a clickhouse:// URL"))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hostport, database) = rest.split_once('/').ok_or_else(|| bad("no database"))?;
        let (host, port) = hostport.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        // The database name is written into statements as an identifier.
        if !name_ok(database) {
            return Err(bad("the database name must be letters, digits and _"));
        }
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let (user, password) = match auth {
            Some(a) => match a.split_once(':') {
                Some((u, p)) => (u.to_owned(), p.to_owned()),
                None => (a.to_owned(), String::new()),
            },
            None => ("default".to_owned(), String::new()),
        };
        Ok(ClickHouseUrl {
            host: host.to_owned(),
            port,
            database: database.to_owned(),
            user,
            password,
        })
    }

    /// Parses `text`, taking the user and password from
    /// `HEAPTIDE_CLICKHOUSE_USER` and `HEAPTIDE_CLICKHOUSE_PASSWORD` in
    /// `env` when the URL names no user: a password need not be on a
    /// command line, where `ps` shows it.
    pub fn parse_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ClickHouseUrl> {
        let mut url = Self::parse(text)?;
        let names_user = text[SCHEME.len().min(text.len())..].contains('@');
        if !names_user {
            if let Some(u) = env("HEAPTIDE_CLICKHOUSE_USER") {
                url.user = u;
            }
            if let Some(p) = env("HEAPTIDE_CLICKHOUSE_PASSWORD") {
                url.password = p;
            }
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_never_shows_the_password() {
        let u = ClickHouseUrl::parse("clickhouse://ops:hunter2@127.0.0.1:8123/heaptide").unwrap();
        assert_eq!((u.user.as_str(), u.password.as_str()), ("ops", "hunter2"));
        assert_eq!(
            (u.host.as_str(), u.port, u.database.as_str()),
            ("127.0.0.1", 8123, "heaptide")
        );
        assert_eq!(u.to_string(), "clickhouse://ops@127.0.0.1:8123/heaptide");
        assert!(!format!("{u:?}").contains("hunter2"));
        let d = ClickHouseUrl::parse("clickhouse://ch:8123/db").unwrap();
        assert_eq!(d.user, "default");
        let env = |k: &str| (k == "HEAPTIDE_CLICKHOUSE_USER").then(|| "svc".to_owned());
        let e = ClickHouseUrl::parse_with_env("clickhouse://ch:8123/db", env).unwrap();
        assert_eq!(e.user, "svc");
        let named = ClickHouseUrl::parse_with_env("clickhouse://ops@ch:8123/db", env).unwrap();
        assert_eq!(named.user, "ops", "the URL's user wins");
    }

    #[test]
    fn bad_urls_name_what_is_wrong() {
        for (url, why) in [
            ("clickhouse://h/db", "no port"),
            ("clickhouse://h:x/db", "not a number"),
            ("clickhouse://h:1", "no database"),
            ("clickhouse://h:1/a;DROP", "letters, digits"),
        ] {
            let e = ClickHouseUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
