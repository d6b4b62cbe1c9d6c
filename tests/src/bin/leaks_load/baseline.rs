//! An older analyzer binary, timed on the same stores as this build.

use std::time::Duration;

use super::{arg, leaks_cli_with, time};

/// An older analyzer binary, timed on the same stores.
pub(crate) struct Baseline {
    path: std::path::PathBuf,
    /// Its runs (the median is reported): one where a run takes minutes.
    runs: usize,
    /// It reads this build's schema: no downgrade.
    pub(crate) same_schema: bool,
}

impl Baseline {
    pub(crate) fn from_args() -> Option<Baseline> {
        Some(Baseline {
            path: arg("--baseline")?.into(),
            runs: arg("--baseline-runs")
                .and_then(|r| r.parse().ok())
                .unwrap_or(3),
            same_schema: std::env::args().any(|a| a == "--baseline-same-schema"),
        })
    }

    /// Its `leaks --fresh` over the store at `location`: the median time.
    pub(crate) fn time(&self, location: &str) -> Duration {
        let at = std::path::Path::new(location);
        let (took, found) = time(self.runs, || leaks_cli_with(&self.path, at, &["--fresh"]));
        eprintln!("baseline's leaks found: {found:?}");
        took
    }
}

/// The baseline's column: its time, or its times before and after this
/// build's.
pub(crate) fn baseline_cell(before: Option<Duration>, after: Option<Duration>) -> String {
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    match (before, after) {
        (Some(b), Some(a)) => format!("{} before, {} after", secs(b), secs(a)),
        (_, a) => a.map_or(String::new(), secs),
    }
}

/// Marks a store with the schema version before rollups, so that an
/// older analyzer reads it (it ignores the rollups table).
pub(crate) fn downgrade(
    location: &str,
    clickhouse: Option<&heaptide_testkit::clickhouse::ClickHouse>,
) {
    if let Some(db) = location
        .rsplit('/')
        .next()
        .filter(|_| location.starts_with("clickhouse://"))
    {
        let ch = clickhouse.expect("a baseline on ClickHouse needs this run's own server");
        ch.query(&format!("TRUNCATE TABLE {db}.meta"));
        ch.query(&format!(
            "INSERT INTO {db}.meta VALUES ('schema_version', 1)"
        ));
    } else {
        let c = rusqlite::Connection::open(location).unwrap();
        c.pragma_update(None, "user_version", 4).unwrap();
    }
}
