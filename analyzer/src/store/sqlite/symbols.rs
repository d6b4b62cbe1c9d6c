//! The names of a build-id's addresses, kept for the whole fleet.

use std::collections::HashMap;

use heaptide_wire::pprof::Frame;
use rusqlite::params;

use super::SqliteStore;
use crate::error::Result;

impl SqliteStore {
    pub(super) fn read_symbols(
        &self,
        build_id: &str,
        offsets: &[u64],
    ) -> Result<HashMap<u64, Vec<Frame>>> {
        self.with_reader(|c| {
            let mut stmt =
                c.prepare_cached("SELECT frames FROM symbols WHERE build_id = ?1 AND offset = ?2")?;
            let mut out = HashMap::new();
            for &o in offsets {
                let found: Option<String> = stmt
                    .query_row(params![build_id, o as i64], |r| r.get(0))
                    .ok();
                if let Some(frames) = found.and_then(|j| serde_json::from_str(&j).ok()) {
                    out.insert(o, frames);
                }
            }
            Ok(out)
        })
    }

    pub(super) fn write_symbols(&self, build_id: &str, rows: &[(u64, Vec<Frame>)]) -> Result<()> {
        let mut guard = self.writer();
        let tx = guard.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO symbols (build_id, offset, frames) VALUES (?1, ?2, ?3)",
            )?;
            for (o, frames) in rows {
                let json = serde_json::to_string(frames).unwrap_or_else(|_| "[]".into());
                stmt.execute(params![build_id, *o as i64, json])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
