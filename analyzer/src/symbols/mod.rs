//! Naming what agents send unnamed.
//!
//! An agent run with `HEAPTIDE_SYMBOLIZE=analyzer` (and any pprof source
//! that sends addresses with build-ids, such as `jemalloc_pprof`) sends
//! each frame as an address in a mapping with a build-id. At ingest, the
//! analyzer names each address from the debug file of its build-id, with
//! the same symbolizer the agent would have used (`heaptide-symbols`), so
//! frames read the same either way. Each address is resolved once for
//! the whole fleet: the names are kept in the store by build-id and file
//! offset, and in memory in front of it.
//!
//! Where no debug file is known, the addresses stay as they are (`0x…`),
//! and are named by later profiles once one is.

mod claims;
mod debug_files;
pub mod fill;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use heaptide_wire::pprof::{self, Frame};

use crate::error::{Error, Result};
use crate::ingest::ValidBatch;
use crate::store::Store;
use fill::Unnamed;

pub use claims::{Claims, CLAIM};
pub use debug_files::{DebugFiles, MAX_FILE_BYTES};

/// Addresses kept in memory; past it the memory is emptied and refilled
/// from the store, which keeps them all.
const MEMO_ENTRIES: usize = 200_000;

/// Counts for `/metrics`.
#[derive(Debug, Default)]
pub struct SymbolCounts {
    /// Passes over a debug file: one per build-id and batch of addresses
    /// not named before anywhere in the fleet.
    pub passes: AtomicU64,
    /// Addresses named from a debug file.
    pub resolved: AtomicU64,
    /// Addresses left unnamed: no debug file for their build-id.
    pub missing: AtomicU64,
    /// Object files agents uploaded, and the analyzer kept.
    pub uploads: AtomicU64,
}

/// Named addresses by (build-id, offset).
type Memo = HashMap<(Arc<str>, u64), Arc<[Frame]>>;

/// The analyzer's symbolizer.
pub struct Symbols {
    files: DebugFiles,
    memo: Mutex<Memo>,
    /// Held while a debug file is read, so that two batches of one build-id
    /// resolve it once; with each build-id's DWARF unit index.
    passes: Mutex<HashMap<String, heaptide_symbols::dwarf::UnitIndex>>,
    pub counts: SymbolCounts,
    /// Which agent is asked to upload which build-id.
    pub claims: Claims,
}

impl Symbols {
    /// A symbolizer that searches `dirs` and then the `debuginfod` server
    /// for debug files, and copies them into (and keeps uploads in)
    /// `cache`.
    pub fn new(dirs: Vec<PathBuf>, debuginfod: Option<String>, cache: PathBuf) -> Self {
        Symbols {
            files: DebugFiles::new(dirs, debuginfod, cache),
            memo: Mutex::new(HashMap::new()),
            passes: Mutex::new(HashMap::new()),
            counts: SymbolCounts::default(),
            claims: Claims::default(),
        }
    }

    /// Names the unnamed addresses of each profile of `vb` that it can,
    /// within the profile limits `limits`. Returns the build-ids it found
    /// no debug file for.
    ///
    /// # Errors
    /// When the store fails, or a named profile exceeds `limits`.
    pub fn name_batch(
        &self,
        vb: &mut ValidBatch,
        store: &dyn Store,
        limits: &pprof::DecodeLimits,
    ) -> Result<Vec<String>> {
        let mut lacking = Vec::new();
        for p in &mut vb.profiles {
            let unnamed = p.stacks.iter().flat_map(|s| &s.frames).any(is_unnamed);
            if !unnamed {
                continue;
            }
            let mut profile = pprof::decode(&p.raw, limits)
                .map_err(|e| Error::invalid("profile", e.to_string()))?;
            let wanted = fill::unnamed(&profile);
            let named = self.resolve(&wanted, store, &mut lacking)?;
            if fill::apply(&mut profile, &named) == 0 {
                continue;
            }
            p.stacks = pprof::heap_stacks(&profile, limits)
                .map_err(|e| Error::invalid("profile", e.to_string()))?;
            p.raw = pprof::encode_gzip(&profile);
        }
        lacking.sort_unstable();
        lacking.dedup();
        Ok(lacking)
    }

    /// The frames of each location of `wanted` that has a name.
    fn resolve(
        &self,
        wanted: &[(u64, Unnamed)],
        store: &dyn Store,
        lacking: &mut Vec<String>,
    ) -> Result<HashMap<u64, Arc<[Frame]>>> {
        let mut by_build: HashMap<&str, Vec<(u64, &Unnamed)>> = HashMap::new();
        for (loc, u) in wanted {
            by_build.entry(&u.build_id).or_default().push((*loc, u));
        }
        let mut out = HashMap::new();
        for (build_id, locs) in by_build {
            let offsets: Vec<u64> = locs.iter().map(|(_, u)| offset(u)).collect();
            let frames = self.frames(build_id, &offsets, &locs, store, lacking)?;
            for (loc, u) in &locs {
                if let Some(f) = frames.get(&offset(u)).filter(|f| !f.is_empty()) {
                    out.insert(*loc, f.clone());
                }
            }
        }
        Ok(out)
    }

    /// The frames of `build_id` at `offsets`, from memory, the store, or a
    /// pass over its debug file, in that order.
    fn frames(
        &self,
        build_id: &str,
        offsets: &[u64],
        locs: &[(u64, &Unnamed)],
        store: &dyn Store,
        lacking: &mut Vec<String>,
    ) -> Result<HashMap<u64, Arc<[Frame]>>> {
        let key: Arc<str> = Arc::from(build_id);
        let mut found = self.remembered(&key, offsets);
        if found.len() == offsets.len() {
            return Ok(found);
        }
        // One pass at a time: a second batch of the same build-id waits,
        // then finds what the first resolved.
        let mut passes = self.passes.lock().unwrap_or_else(|p| p.into_inner());
        found = self.remembered(&key, offsets);
        let mut misses: Vec<u64> = offsets
            .iter()
            .filter(|o| !found.contains_key(o))
            .copied()
            .collect();
        misses.sort_unstable();
        misses.dedup();
        for (o, f) in store.symbols(build_id, &misses)? {
            found.insert(o, f.into());
        }
        misses.retain(|o| !found.contains_key(o));
        if !misses.is_empty() {
            let index = passes.entry(build_id.to_owned()).or_default();
            match self.read_debug_file(build_id, &misses, locs, index) {
                Some(rows) => {
                    store.keep_symbols(build_id, &rows)?;
                    self.counts.passes.fetch_add(1, Ordering::Relaxed);
                    for (o, f) in rows {
                        found.insert(o, f.into());
                    }
                }
                None => {
                    lacking.push(build_id.to_owned());
                    self.counts
                        .missing
                        .fetch_add(misses.len() as u64, Ordering::Relaxed);
                }
            }
        }
        drop(passes);
        self.remember(&key, &found);
        Ok(found)
    }

    /// What memory holds of `offsets`.
    fn remembered(&self, key: &Arc<str>, offsets: &[u64]) -> HashMap<u64, Arc<[Frame]>> {
        let memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        offsets
            .iter()
            .filter_map(|o| Some((*o, memo.get(&(key.clone(), *o))?.clone())))
            .collect()
    }

    fn remember(&self, key: &Arc<str>, found: &HashMap<u64, Arc<[Frame]>>) {
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        if memo.len() + found.len() > MEMO_ENTRIES {
            memo.clear();
        }
        for (o, f) in found {
            memo.insert((key.clone(), *o), f.clone());
        }
    }

    /// One pass over `build_id`'s debug file for `misses`: the frames at
    /// each (empty where nothing names it). `None` when there is no debug
    /// file.
    fn read_debug_file(
        &self,
        build_id: &str,
        misses: &[u64],
        locs: &[(u64, &Unnamed)],
        index: &mut heaptide_symbols::dwarf::UnitIndex,
    ) -> Option<Vec<(u64, Vec<Frame>)>> {
        let path = self.files.path(build_id)?;
        let path = path.to_str()?;
        let segments = heaptide_symbols::load_segments(path)?;
        let mapping_of: HashMap<u64, &Unnamed> =
            locs.iter().map(|(_, u)| (offset(u), *u)).collect();
        let probes: Vec<Option<u64>> = misses
            .iter()
            .map(|o| {
                let u = mapping_of.get(o)?;
                heaptide_symbols::text_address(&segments, u.mapping_offset, u.delta)
            })
            .collect();
        let known: Vec<u64> = probes.iter().flatten().copied().collect();
        let mut resolved = heaptide_symbols::resolve(path, &known, true, index).into_iter();
        let rows = misses
            .iter()
            .zip(&probes)
            .map(|(o, p)| {
                let frames = p
                    .and_then(|_| resolved.next())
                    .filter(|f| f.last().is_some_and(|f| !f.function.is_empty()))
                    .unwrap_or_default();
                (*o, frames)
            })
            .collect::<Vec<_>>();
        self.counts
            .resolved
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        Some(rows)
    }

    /// The build-ids of `ids` with no debug file to be found.
    pub fn without_files(&self, ids: &[String]) -> Vec<String> {
        ids.iter()
            .filter(|id| self.files.path(id).is_none())
            .cloned()
            .collect()
    }

    /// Where debug files are found and kept.
    pub fn files(&self) -> &DebugFiles {
        &self.files
    }
}

/// The address's offset in its object's file: the same for every process
/// that runs the build, wherever it was loaded.
fn offset(u: &Unnamed) -> u64 {
    u.mapping_offset + u.delta
}

/// A frame the agent left for the analyzer, as pprof decoding names it.
fn is_unnamed(f: &Frame) -> bool {
    f.file.is_empty() && f.function.starts_with("0x")
}
