//! The service and instance of each segment, remembered by the store. A
//! segment's names never change; sent with every row of a cohort's
//! envelopes, they were half of the bytes that read sent, and a join for
//! ClickHouse to make (docs/benchmarks.md).

use std::sync::Mutex;

use fnv::FnvHashMap;

use super::rowbinary::id_list;
use super::write::lock;
use super::ClickHouseStore;
use crate::error::Result;
use crate::store::rollup::Names;

/// How many segments' names are remembered: a fleet's live segments many
/// times over. Past it, what is remembered is forgotten and read again as
/// asked for, so memory stays bounded whatever the store holds.
const MAX_REMEMBERED: usize = 1 << 16;

#[derive(Default)]
pub(super) struct SegmentNames(Mutex<FnvHashMap<i64, Names>>);

impl ClickHouseStore {
    /// The names of each of `segments` (distinct) that the store holds,
    /// read in one statement for those not remembered.
    pub(super) fn segment_names(&self, segments: &[i64]) -> Result<FnvHashMap<i64, Names>> {
        let mut out = FnvHashMap::default();
        let mut missing = Vec::new();
        {
            let known = lock(&self.names.0);
            for s in segments {
                match known.get(s) {
                    Some(n) => {
                        out.insert(*s, n.clone());
                    }
                    None => missing.push(*s),
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let read = self.rows(
            &format!(
                "SELECT id, any(service), any(instance) FROM segments WHERE id IN ({})
                 GROUP BY id",
                id_list(&missing)
            ),
            |r| Ok((r.i64()?, r.string()?, r.string()?)),
        )?;
        let mut known = lock(&self.names.0);
        if known.len() + read.len() > MAX_REMEMBERED {
            known.clear();
        }
        for (id, service, instance) in read {
            let names: Names = (service.into(), instance.into());
            known.insert(id, names.clone());
            out.insert(id, names);
        }
        Ok(out)
    }
}
