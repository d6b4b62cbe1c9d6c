//! What continuous evaluation keeps: the latest findings of each
//! instance (so that pages and commands read them instead of judging a
//! fleet on every request), the active alerts, and the history of both.

use std::collections::HashMap;

use rusqlite::params;

use super::SqliteStore;
use crate::error::Result;
use crate::store::{KeptAlert, KeptFindings, StoredTransition, Transition};

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

    pub(super) fn read_kept_times(&self) -> Result<HashMap<(String, String), i64>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT i.service, i.instance, f.evaluated_ms
                 FROM findings f JOIN instances i ON i.id = f.instance_id",
            )?;
            let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn write_alerts(&self, alerts: &[KeptAlert]) -> Result<()> {
        let mut guard = self.writer();
        let tx = guard.conn.transaction()?;
        tx.execute("DELETE FROM alerts", [])?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT INTO alerts (alert_key, alert) VALUES (?1, ?2)")?;
            for a in alerts {
                stmt.execute(params![a.key, a.alert])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn read_alerts(&self) -> Result<Vec<KeptAlert>> {
        self.with_reader(|c| {
            let mut stmt =
                c.prepare_cached("SELECT alert_key, alert FROM alerts ORDER BY alert_key")?;
            let rows = stmt.query_map([], |r| {
                Ok(KeptAlert {
                    key: r.get(0)?,
                    alert: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    pub(super) fn write_transitions(&self, ts: &[Transition]) -> Result<()> {
        let mut guard = self.writer();
        let tx = guard.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO transitions
                 (at_ms, service, instance, subject, resource, state, severity, summary)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for t in ts {
                stmt.execute(params![
                    t.at_ms,
                    t.service,
                    t.instance,
                    t.subject,
                    t.resource.name(),
                    t.state.name(),
                    t.severity.map(|s| s.name()),
                    t.summary
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn read_transitions(
        &self,
        service: &str,
        instance: &str,
        limit: usize,
    ) -> Result<Vec<Transition>> {
        self.with_reader(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at_ms, service, instance, subject, resource, state, severity, summary
                 FROM transitions WHERE service = ?1 AND instance = ?2
                 ORDER BY at_ms DESC, rowid DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![service, instance, limit as i64], |r| {
                Ok(StoredTransition {
                    at_ms: r.get(0)?,
                    service: r.get(1)?,
                    instance: r.get(2)?,
                    subject: r.get(3)?,
                    resource: r.get(4)?,
                    state: r.get(5)?,
                    severity: r.get(6)?,
                    summary: r.get(7)?,
                })
            })?;
            rows.map(|r| r?.typed()).collect()
        })
    }
}
