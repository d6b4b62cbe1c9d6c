//! The latest findings of each instance, kept so that pages and commands
//! read them instead of judging a fleet on every request.

use rusqlite::params;

use super::SqliteStore;
use crate::error::Result;
use crate::store::KeptFindings;

impl SqliteStore {
    pub(super) fn write_findings(
        &self,
        service: &str,
        instance: &str,
        evaluated_ms: i64,
        findings_json: &str,
    ) -> Result<()> {
        let guard = self.writer();
        guard.conn.execute(
            "INSERT INTO findings (instance_id, evaluated_ms, findings)
             SELECT id, ?3, ?4 FROM instances WHERE service = ?1 AND instance = ?2
             ON CONFLICT (instance_id) DO UPDATE SET
                evaluated_ms = excluded.evaluated_ms, findings = excluded.findings",
            params![service, instance, evaluated_ms, findings_json],
        )?;
        Ok(())
    }

    pub(super) fn read_findings(&self, service: Option<&str>) -> Result<Vec<KeptFindings>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT i.service, i.instance, f.evaluated_ms, f.findings
                 FROM findings f JOIN instances i ON i.id = f.instance_id
                 WHERE ?1 IS NULL OR i.service = ?1
                 ORDER BY i.service, i.instance",
            )?;
            let rows = stmt.query_map([service], |r| {
                Ok(KeptFindings {
                    service: r.get(0)?,
                    instance: r.get(1)?,
                    evaluated_ms: r.get(2)?,
                    findings: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}
