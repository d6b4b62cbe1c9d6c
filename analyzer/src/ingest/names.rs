//! Caps on distinct metric names, per instance and in the whole store.
//!
//! Every new name costs a row of the names table, an entry in the
//! writer's cache and a series in every read, and nothing in a batch's
//! own limits stops an agent (or a bug: a request id in a metric name)
//! from sending new names for ever. Past a cap, the new names are
//! dropped from the batch and counted; everything else in it is stored,
//! so an instance's heap and fds are still watched while a cardinality
//! explosion is refused.
//!
//! The ledger is in memory: the store's names seed it when retention runs
//! (at start and every ten minutes), which also forgets names whose data
//! has expired. An instance's own names are kept while it reports, and
//! forgotten after an hour of silence.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use heaptide_wire::Batch;

/// The caps, from `serve`'s settings.
#[derive(Debug, Clone, Copy)]
pub struct NameCaps {
    /// Distinct names in the store.
    pub total: usize,
    /// Distinct names one instance may send.
    pub per_instance: usize,
}

impl Default for NameCaps {
    fn default() -> Self {
        NameCaps {
            total: crate::config::DEFAULT_MAX_METRIC_NAMES,
            per_instance: crate::config::DEFAULT_MAX_METRIC_NAMES_PER_INSTANCE,
        }
    }
}

/// How long an instance's names are kept after its last batch.
const INSTANCE_IDLE_MS: i64 = 3_600_000;

struct Instance {
    /// Its names, as keyed hashes: 8 bytes each.
    names: HashSet<u64>,
    last_ms: i64,
    warned: bool,
}

#[derive(Default)]
struct Ledger {
    known: HashSet<Arc<str>>,
    /// Names admitted since the last reseed: the store's list, read
    /// before they were stored, may not have them yet.
    recent: HashSet<Arc<str>>,
    instances: HashMap<u64, Instance>,
}

/// Names admitted so far, per instance and in all.
pub struct NameLedger {
    caps: NameCaps,
    /// Keys drawn at random for this process: no one can craft two names
    /// or two instances that share a hash.
    hasher: std::hash::RandomState,
    ledger: Mutex<Ledger>,
}

impl NameLedger {
    pub fn new(caps: NameCaps) -> Self {
        NameLedger {
            caps,
            hasher: std::hash::RandomState::new(),
            ledger: Mutex::new(Ledger::default()),
        }
    }

    /// Drops from `batch` every metric whose name is new past a cap, and
    /// returns how many samples' metrics were dropped.
    pub fn admit(&self, batch: &mut Batch, now_ms: i64) -> u64 {
        let who = self
            .hasher
            .hash_one((&batch.agent.service, &batch.agent.instance));
        let mut l = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let Ledger {
            known,
            recent,
            instances,
        } = &mut *l;
        let inst = instances.entry(who).or_insert_with(|| Instance {
            names: HashSet::new(),
            last_ms: now_ms,
            warned: false,
        });
        inst.last_ms = now_ms;
        let mut dropped = 0;
        for s in &mut batch.samples {
            s.metrics.retain(|name, _| {
                let h = self.hasher.hash_one(name);
                if inst.names.contains(&h) {
                    return true;
                }
                let new_in_store = !known.contains(name.as_str());
                if inst.names.len() >= self.caps.per_instance
                    || (new_in_store && known.len() >= self.caps.total)
                {
                    dropped += 1;
                    return false;
                }
                inst.names.insert(h);
                if new_in_store {
                    let name: Arc<str> = name.as_str().into();
                    recent.insert(name.clone());
                    known.insert(name);
                }
                true
            });
        }
        if dropped > 0 && !inst.warned {
            inst.warned = true;
            tracing::warn!(
                service = %batch.agent.service,
                instance = %batch.agent.instance,
                "metric names past the cap ({} per instance, {} in all) are dropped",
                self.caps.per_instance,
                self.caps.total
            );
        }
        dropped
    }

    /// Takes the store's names, and those admitted since the last reseed,
    /// as the known ones: names whose data has expired leave, and a name
    /// admitted after the store's list was read stays counted. Forgets
    /// instances silent for an hour.
    pub fn reseed(&self, names: Vec<String>, now_ms: i64) {
        let mut l = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        let recent = std::mem::take(&mut l.recent);
        l.known = names.into_iter().map(Arc::from).chain(recent).collect();
        l.instances
            .retain(|_, i| now_ms - i.last_ms < INSTANCE_IDLE_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(instance: &str, names: &[&str]) -> Batch {
        use heaptide_testkit::fixtures;
        let mut b = fixtures::batch(fixtures::agent("svc", instance, 1, 0), 1, 0);
        let values: Vec<(&str, f64)> = names.iter().map(|n| (*n, 1.0)).collect();
        b.samples.push(fixtures::metrics(0, &values));
        b
    }

    #[test]
    fn new_names_past_either_cap_are_dropped_and_known_ones_kept() {
        let l = NameLedger::new(NameCaps {
            total: 4,
            per_instance: 3,
        });
        let mut b = batch("a", &["heap", "fds", "x1", "x2"]);
        assert_eq!(l.admit(&mut b, 0), 1, "the fourth name of one instance");
        assert_eq!(b.samples[0].metrics.len(), 3);
        // Another instance shares the known names, and may add one more
        // before the store's total is reached.
        let mut b = batch("b", &["heap", "fds", "y1", "y2"]);
        assert_eq!(l.admit(&mut b, 0), 1);
        let kept: Vec<_> = b.samples[0].metrics.keys().cloned().collect();
        assert_eq!(kept, ["fds", "heap", "y1"]);
        // Known names are always kept.
        let mut b = batch("a", &["heap", "fds", "x1"]);
        assert_eq!(l.admit(&mut b, 1), 0);
        // A list read before the newest names were stored keeps them.
        l.reseed(vec!["heap".into()], 2);
        let mut b = batch("c", &["c1"]);
        assert_eq!(l.admit(&mut b, 3), 1, "the store is still full");
        // Expired names leave; a silent instance is forgotten.
        l.reseed(vec!["heap".into(), "fds".into()], INSTANCE_IDLE_MS + 1);
        let mut b = batch("a", &["heap", "fds", "z1", "z2"]);
        assert_eq!(l.admit(&mut b, INSTANCE_IDLE_MS + 2), 1);
    }
}
