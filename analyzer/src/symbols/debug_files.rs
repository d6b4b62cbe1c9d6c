//! Where the debug file of a build-id is: the analyzer's own cache of
//! them (which agents' uploads go to), then the directories it was given,
//! then a debuginfod server.
//!
//! A directory is searched as GDB and debuginfod lay them out
//! (`.build-id/ab/cdef….debug`), then by name (`<build-id>.debug`,
//! `<build-id>`), then by reading the build-id of each file in it, so that
//! a directory of unstripped binaries works as it is. A file found is
//! copied into the cache (under a temporary name, then renamed) before it
//! is read: the symbolizer maps files, and only the cache's are known
//! never to change while mapped.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Files in one searched directory past this many are not read for their
/// build-id: a directory is meant for debug files, not a whole disk.
const MAX_SCANNED: usize = 10_000;
/// The largest debug file taken, uploaded or fetched: a debug build of a
/// large service.
pub const MAX_FILE_BYTES: u64 = 2 << 30;
/// How long a build-id found nowhere is not looked for again.
const RETRY: Duration = Duration::from_secs(30);

pub struct DebugFiles {
    dirs: Vec<PathBuf>,
    /// A debuginfod server's base URL.
    debuginfod: Option<String>,
    cache: PathBuf,
    /// Build-ids found nowhere, and when.
    missing: Mutex<HashMap<String, Instant>>,
}

impl DebugFiles {
    pub fn new(dirs: Vec<PathBuf>, debuginfod: Option<String>, cache: PathBuf) -> Self {
        DebugFiles {
            dirs,
            debuginfod,
            cache,
            missing: Mutex::new(HashMap::new()),
        }
    }

    /// The cached debug file of `build_id` (a checked hex string), copied
    /// from a searched directory or fetched from debuginfod if needed;
    /// `None` where there is none.
    pub fn path(&self, build_id: &str) -> Option<PathBuf> {
        let cached = self.cache.join(build_id);
        if cached.is_file() {
            return Some(cached);
        }
        let recently =
            |m: &HashMap<String, Instant>| m.get(build_id).is_some_and(|t| t.elapsed() < RETRY);
        if recently(&self.missing.lock().unwrap_or_else(|p| p.into_inner())) {
            return None;
        }
        let found = match self.dirs.iter().find_map(|d| search(d, build_id)) {
            Some(f) => self.keep(&f, build_id).ok(),
            None => self.fetch(build_id),
        };
        let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        if found.is_some() {
            missing.remove(build_id);
        } else {
            missing.insert(build_id.to_owned(), Instant::now());
        }
        found
    }

    /// `build_id`'s debug file from the debuginfod server, if one is set
    /// and has it (`GET /buildid/<id>/debuginfo`), streamed into the cache.
    fn fetch(&self, build_id: &str) -> Option<PathBuf> {
        let base = self.debuginfod.as_deref()?;
        let url = format!(
            "{}/buildid/{build_id}/debuginfo",
            base.trim_end_matches('/')
        );
        let http: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = match http.get(&url).call() {
            Ok(r) if r.status() == 200 => r,
            Ok(r) => {
                tracing::debug!(status = r.status().as_u16(), %url, "debuginfod has no debug file");
                return None;
            }
            Err(e) => {
                tracing::warn!(%url, "debuginfod unreachable: {e}");
                return None;
            }
        };
        let tmp = self.temporary(build_id).ok()?;
        let copied = std::fs::File::create(&tmp).and_then(|mut f| {
            let mut body = resp.body_mut().as_reader().take(MAX_FILE_BYTES + 1);
            std::io::copy(&mut body, &mut f)
        });
        match copied {
            Ok(n) if n <= MAX_FILE_BYTES => match self.adopt(&tmp, build_id) {
                Ok(()) => Some(self.cache.join(build_id)),
                Err(e) => {
                    tracing::warn!(%url, "debuginfod's file refused: {e}");
                    None
                }
            },
            _ => {
                let _ = std::fs::remove_file(&tmp);
                None
            }
        }
    }

    /// Whether the cache holds `build_id`'s debug file.
    pub fn has(&self, build_id: &str) -> bool {
        self.cache.join(build_id).is_file()
    }

    /// A fresh temporary path in the cache, for an upload of `build_id`.
    ///
    /// # Errors
    /// When the cache directory cannot be made.
    pub fn temporary(&self, build_id: &str) -> std::io::Result<PathBuf> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(&self.cache)?;
        let n = N.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .cache
            .join(format!(".{build_id}.{}.{n}.upload", std::process::id())))
    }

    /// Takes the uploaded file at `tmp` as `build_id`'s debug file if it
    /// is an object file with that build-id; removes it either way.
    ///
    /// # Errors
    /// When it is not, or it cannot be moved into place.
    pub fn adopt(&self, tmp: &Path, build_id: &str) -> crate::Result<()> {
        let found = tmp.to_str().and_then(heaptide_symbols::build_id);
        if found.as_deref() != Some(build_id) {
            let _ = std::fs::remove_file(tmp);
            return Err(crate::Error::invalid(
                "body",
                match found {
                    Some(other) => format!("an object file with build-id {other}, not {build_id}"),
                    None => "not an object file with a build-id".to_owned(),
                },
            ));
        }
        std::fs::rename(tmp, self.cache.join(build_id))?;
        self.missing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(build_id);
        Ok(())
    }

    /// Copies `from` into the cache as `build_id`'s debug file.
    fn keep(&self, from: &Path, build_id: &str) -> std::io::Result<PathBuf> {
        let to = self.cache.join(build_id);
        let tmp = self.temporary(build_id)?;
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
