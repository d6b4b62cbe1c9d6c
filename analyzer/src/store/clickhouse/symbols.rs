//! The names of a build-id's addresses, kept for the whole fleet: every
//! analyzer sharing the database reads what one of them resolved.

use std::collections::HashMap;

use heaptide_wire::pprof::Frame;

use super::rowbinary::{lit, RowWriter};
use super::ClickHouseStore;
use crate::error::Result;

/// Offsets asked about in one statement.
const CHUNK: usize = 2_000;

impl ClickHouseStore {
    pub(super) fn read_symbols(
        &self,
        build_id: &str,
        offsets: &[u64],
    ) -> Result<HashMap<u64, Vec<Frame>>> {
        let mut out = HashMap::new();
        for chunk in offsets.chunks(CHUNK) {
            let list: Vec<String> = chunk.iter().map(u64::to_string).collect();
            let rows = self.rows(
                &format!(
                    "SELECT offset, any(frames) FROM symbols
                     WHERE build_id = {} AND offset IN ({}) GROUP BY offset",
                    lit(build_id),
                    list.join(",")
                ),
                |r| Ok((r.u64()?, r.string()?)),
            )?;
            for (o, json) in rows {
                if let Ok(frames) = serde_json::from_str(&json) {
                    out.insert(o, frames);
                }
            }
        }
        Ok(out)
    }

    pub(super) fn write_symbols(&self, build_id: &str, rows: &[(u64, Vec<Frame>)]) -> Result<()> {
        let mut w = RowWriter::default();
        for (o, frames) in rows {
            let json = serde_json::to_string(frames).unwrap_or_else(|_| "[]".into());
            w.str(build_id).u64(*o).str(&json).row();
        }
        self.insert("symbols", &w)
    }
}
