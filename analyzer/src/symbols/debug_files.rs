//! Where the debug file of a build-id is: the analyzer's own cache of
//! them, then the directories it was given.
//!
//! A directory is searched as GDB and debuginfod lay them out
//! (`.build-id/ab/cdef….debug`), then by name (`<build-id>.debug`,
//! `<build-id>`), then by reading the build-id of each file in it, so that
//! a directory of unstripped binaries works as it is. A file found is
//! copied into the cache (under a temporary name, then renamed) before it
//! is read: the symbolizer maps files, and only the cache's are known
//! never to change while mapped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Files in one searched directory past this many are not read for their
/// build-id: a directory is meant for debug files, not a whole disk.
const MAX_SCANNED: usize = 10_000;
/// How long a build-id found nowhere is not looked for again.
const RETRY: Duration = Duration::from_secs(30);

pub struct DebugFiles {
    dirs: Vec<PathBuf>,
    cache: PathBuf,
    /// Build-ids found nowhere, and when.
    missing: Mutex<HashMap<String, Instant>>,
}

impl DebugFiles {
    pub fn new(dirs: Vec<PathBuf>, cache: PathBuf) -> Self {
        DebugFiles {
            dirs,
            cache,
            missing: Mutex::new(HashMap::new()),
        }
    }

    /// The cached debug file of `build_id` (a checked hex string), copied
    /// from a searched directory if needed; `None` where there is none.
    pub fn path(&self, build_id: &str) -> Option<PathBuf> {
        let cached = self.cache.join(build_id);
        if cached.is_file() {
            return Some(cached);
        }
        let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        if missing.get(build_id).is_some_and(|t| t.elapsed() < RETRY) {
            return None;
        }
        let found = self.dirs.iter().find_map(|d| search(d, build_id));
        match found.and_then(|f| self.keep(&f, build_id).ok()) {
            Some(p) => {
                missing.remove(build_id);
                Some(p)
            }
            None => {
                missing.insert(build_id.to_owned(), Instant::now());
                None
            }
        }
    }

    /// Copies `from` into the cache as `build_id`'s debug file.
    pub fn keep(&self, from: &Path, build_id: &str) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.cache)?;
        let to = self.cache.join(build_id);
        let tmp = self
            .cache
            .join(format!(".{build_id}.{}.tmp", std::process::id()));
        std::fs::copy(from, &tmp)?;
        std::fs::rename(&tmp, &to)?;
        Ok(to)
    }
}

/// The debug file of `build_id` in `dir`, if there is one.
fn search(dir: &Path, build_id: &str) -> Option<PathBuf> {
    let (head, tail) = build_id.split_at(2);
    let named = [
        dir.join(".build-id")
            .join(head)
            .join(format!("{tail}.debug")),
        dir.join(format!("{build_id}.debug")),
        dir.join(build_id),
    ];
    if let Some(p) = named.into_iter().find(|p| p.is_file()) {
        return Some(p);
    }
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .take(MAX_SCANNED)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .find(|p| {
            p.to_str()
                .and_then(heaptide_symbols::build_id)
                .is_some_and(|id| id == build_id)
        })
}
