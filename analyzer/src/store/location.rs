//! Where the store is: a SQLite file's path, or a `clickhouse://` URL.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Bounds, ClickHouseStore, ClickHouseUrl, Durability, SqliteStore, Store};
use crate::error::Result;

/// A store's location as given to `--store`, `HEAPTIDE_STORE` or the
/// config's `store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    ClickHouse(ClickHouseUrl),
}

impl Location {
    /// Parses `text`: a `clickhouse://` URL (its credentials completed
    /// from `env`), or else a file path.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Location> {
        if text.starts_with(super::clickhouse::url::SCHEME) {
            return Ok(Location::ClickHouse(ClickHouseUrl::parse_with_env(
                text, env,
            )?));
        }
        Ok(Location::Sqlite(PathBuf::from(text)))
    }
}

/// Shown in logs and errors; a URL's password never is.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::ClickHouse(u) => write!(f, "{u}"),
        }
    }
}

/// Opens the store for `serve`, creating or upgrading its schema.
/// `durability` is SQLite's; ClickHouse's is the server's own.
pub fn open(at: &Location, durability: Durability, bounds: Bounds) -> Result<Arc<dyn Store>> {
    Ok(match at {
        Location::Sqlite(path) => {
            Arc::new(SqliteStore::open_with(path, durability)?.bounded(bounds))
        }
        Location::ClickHouse(url) => Arc::new(ClickHouseStore::open(url.clone())?.bounded(bounds)),
    })
}

/// Opens a store that must already exist, without changing it: the read
/// commands.
pub fn open_read_only(at: &Location) -> Result<Box<dyn Store>> {
    Ok(match at {
        Location::Sqlite(path) => Box::new(SqliteStore::open_read_only(path)?),
        Location::ClickHouse(url) => Box::new(ClickHouseStore::open_read_only(url.clone())?),
    })
}
