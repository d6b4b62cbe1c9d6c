/// Everything the analyzer library can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot open store {path}: {source}")]
    StoreOpen {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("store {0} does not exist (start `analyzer serve` first, or pass --store)")]
    StoreMissing(String),
    /// The store failed a read or a write. `trouble` says whether it may
    /// pass; the backend's own message is in `reason`, for the log.
    #[error("store query failed: {reason}")]
    StoreFailed {
        trouble: StoreTrouble,
        reason: String,
    },
    /// The networked store did not answer, or cannot take work now: a
    /// request should be tried again later.
    #[error("store {url} is unreachable: {reason}")]
    StoreUnavailable { url: String, reason: String },
    /// The store refused the analyzer's credentials. The URL and the user
    /// are named; the password never is.
    #[error("store {url} refused user {user:?}: wrong user or password (set them in the URL or HEAPTIDE_CLICKHOUSE_USER and HEAPTIDE_CLICKHOUSE_PASSWORD)")]
    StoreAuth { url: String, user: String },
    /// The store refused a statement.
    #[error("store {url} failed: {reason}")]
    StoreQuery { url: String, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    /// The caller's token may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("config {path}: {reason}")]
    Config { path: String, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("more {what} than the {limit} this analyzer accepts (its `{setting}` setting)")]
    Bound {
        what: String,
        limit: u64,
        setting: &'static str,
    },
}

/// What kind of trouble a store is in, as each backend sorts its own
/// errors: trouble that passes is answered with a 503 and `Retry-After`,
/// so that agents keep their data and send it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreTrouble {
    /// The store's disk is full.
    DiskFull,
    /// Another writer holds the store.
    Busy,
    /// The store cannot read or write its disk.
    DiskUnusable,
    /// Anything else: not expected to pass by itself.
    Other,
}

impl StoreTrouble {
    /// Why trouble that may pass is there, as a client is told.
    pub fn passing(self) -> Option<&'static str> {
        match self {
            StoreTrouble::DiskFull => Some("the store's disk is full"),
            StoreTrouble::Busy => Some("the store is busy"),
            StoreTrouble::DiskUnusable => Some("the store cannot use its disk"),
            StoreTrouble::Other => None,
        }
    }
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
