//! What continuous evaluation keeps: findings per instance (folded to
//! the newest evaluation), each shard's active alerts as generations,
//! and the history of both.

use super::rowbinary::{lit, RowWriter};
use super::ClickHouseStore;
use crate::error::Result;
use crate::store::{KeptAlert, KeptFindings, Shard, StoredTransition, Transition};

impl ClickHouseStore {
    pub(super) fn write_findings(
        &self,
        service: &str,
        instance: &str,
        evaluated_ms: i64,
        findings_json: &str,
    ) -> Result<()> {
        let mut w = RowWriter::default();
        w.str(service)
            .str(instance)
            .i64(evaluated_ms)
            .str(findings_json);
        w.u64(evaluated_ms.max(0) as u64).row();
        self.insert("findings", &w)
    }

    /// Every row in one insert: a pass keeps a service's findings at once.
    pub(super) fn write_findings_each(&self, rows: &[KeptFindings]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut w = RowWriter::default();
        for r in rows {
            w.str(&r.service)
                .str(&r.instance)
                .i64(r.evaluated_ms)
                .str(&r.findings);
            w.u64(r.evaluated_ms.max(0) as u64).row();
        }
        self.insert("findings", &w)
    }

    pub(super) fn read_kept_times(
        &self,
    ) -> Result<std::collections::HashMap<(String, String), i64>> {
        let rows = self.rows(
            "SELECT service, instance, max(evaluated_ms) FROM findings GROUP BY service, instance",
            |r| Ok(((r.string()?, r.string()?), r.i64()?)),
        )?;
        Ok(rows.into_iter().collect())
    }

    pub(super) fn read_findings(&self, service: Option<&str>) -> Result<Vec<KeptFindings>> {
        let filter = service.map_or("1".to_owned(), |s| format!("service = {}", lit(s)));
        self.rows(
            &format!(
                "SELECT service, instance, argMax(evaluated_ms, version), argMax(findings, version)
                 FROM findings WHERE {filter} GROUP BY service, instance ORDER BY service, instance"
            ),
            |r| {
                Ok(KeptFindings {
                    service: r.string()?,
                    instance: r.string()?,
                    evaluated_ms: r.i64()?,
                    findings: r.string()?,
                })
            },
        )
    }

    /// Writes `shard`'s active alerts as a new generation. A row with an
    /// empty key marks the generation, so that an empty set is one too.
    pub(super) fn write_alerts(&self, shard: Shard, alerts: &[KeptAlert]) -> Result<()> {
        // Generations only grow, even for two passes in one millisecond.
        let now = crate::select::now_ms();
        let last = self
            .generation
            .fetch_max(now, std::sync::atomic::Ordering::SeqCst);
        let generation = if last >= now {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1
        } else {
            now
        };
        let label = shard.to_string();
        let mut w = RowWriter::default();
        w.str(&label).i64(generation).str("").str("").row();
        for a in alerts {
            w.str(&label)
                .i64(generation)
                .str(&a.key)
                .str(&a.alert)
                .row();
        }
        self.insert("alerts", &w)
    }

    pub(super) fn read_alerts(&self) -> Result<Vec<KeptAlert>> {
        self.rows(
            "SELECT alert_key, alert FROM alerts
             WHERE (shard, generation) IN (SELECT shard, max(generation) FROM alerts GROUP BY shard)
               AND alert_key != ''
             ORDER BY alert_key",
            |r| {
                Ok(KeptAlert {
                    key: r.string()?,
                    alert: r.string()?,
                })
            },
        )
    }

    pub(super) fn write_transitions(&self, ts: &[Transition]) -> Result<()> {
        let mut w = RowWriter::default();
        for t in ts {
            w.i64(t.at_ms)
                .str(&t.service)
                .str(&t.instance)
                .str(&t.subject);
            w.str(t.resource.name())
                .str(t.state.name())
                .opt_str(t.severity.map(|s| s.name()));
            w.str(&t.summary).row();
        }
        self.insert("transitions", &w)
    }

    pub(super) fn read_transitions(
        &self,
        service: &str,
        instance: &str,
        limit: usize,
    ) -> Result<Vec<Transition>> {
        self.rows(
            &format!(
                "SELECT at_ms, service, instance, subject, resource, state, severity, summary
                 FROM transitions WHERE service = {} AND instance = {}
                 ORDER BY at_ms DESC LIMIT {}",
                lit(service),
                lit(instance),
                limit.min(100_000)
            ),
            |r| {
                Ok(StoredTransition {
                    at_ms: r.i64()?,
                    service: r.string()?,
                    instance: r.string()?,
                    subject: r.string()?,
                    resource: r.string()?,
                    state: r.string()?,
                    severity: r.opt_string()?,
                    summary: r.string()?,
                })
            },
        )?
        .into_iter()
        .map(StoredTransition::typed)
        .collect()
    }
}
