//! Uploading this process's object files that the analyzer asks for.
//!
//! With `HEAPTIDE_SYMBOLIZE=analyzer` the agent sends addresses and
//! build-ids only. When the analyzer has no debug file for a build-id, the
//! reply to a batch names it (`debuginfo_wanted`), and asks one agent of
//! the fleet only. That agent then uploads the object file from disk, on a
//! thread of its own so that batches keep flowing, once per build-id for
//! the life of the process. It sends what names addresses (symbols, DWARF,
//! program headers and notes, without code or data), streamed from the
//! file, which is never held in memory.
//! When it lands, the next profile is taken early, so that names appear
//! within seconds rather than a profile interval later.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::runtime::Shared;

/// How long profiles wait, from the agent's start, for the analyzer to
/// have what names them: the reply to the first batch, and any upload it
/// asks for.
pub(crate) const NAMES_WAIT: Duration = Duration::from_secs(10);
/// How long one upload may take: a large binary over a slow link.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// One upload thread at a time.
static UPLOADING: AtomicBool = AtomicBool::new(false);
/// Build-ids already uploaded, or tried, by this process.
static TRIED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Starts uploading the files of `wanted` that this process has loaded and
/// has not uploaded yet, unless an upload is under way. With nothing to
/// upload and none under way, the analyzer has what it needs: profiles
/// may be taken.
pub(crate) fn start(shared: &Arc<Shared>, http: &ureq::Agent, wanted: Vec<String>) {
    let fresh: Vec<String> = {
        let mut tried = TRIED.lock().unwrap_or_else(|p| p.into_inner());
        let tried = tried.get_or_insert_with(HashSet::new);
        wanted
            .into_iter()
            .filter(|id| !tried.contains(id))
            .collect()
    };
    if fresh.is_empty() {
        if !UPLOADING.load(Ordering::Acquire) {
            shared.symbols_ready.store(true, Ordering::Relaxed);
        }
        return;
    }
    if UPLOADING.swap(true, Ordering::AcqRel) {
        return;
    }
    let (thread_shared, http) = (shared.clone(), http.clone());
    let spawned = std::thread::Builder::new()
        .name("heaptide-upload".into())
        .spawn(move || {
            crate::allocs::mark_agent_thread();
            let shared = &thread_shared;
            let run = std::panic::AssertUnwindSafe(|| upload_all(shared, &http, &fresh));
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!("heaptide: the upload thread panicked and stopped");
            }
            UPLOADING.store(false, Ordering::Release);
            shared.symbols_ready.store(true, Ordering::Relaxed);
        });
    if spawned.is_err() {
        UPLOADING.store(false, Ordering::Release);
        shared.symbols_ready.store(true, Ordering::Relaxed);
    }
}

fn upload_all(shared: &Shared, http: &ureq::Agent, wanted: &[String]) {
    let objects = crate::objects::loaded();
    let mut any = false;
    for id in wanted {
        TRIED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(id.clone());
        let Some(path) = file_of(&objects, id) else {
            continue;
        };
        match upload(shared, http, id, &path) {
            Ok(()) => any = true,
            Err(e) => tracing::warn!("heaptide: uploading {path} ({id}) failed: {e}"),
        }
    }
    if any {
        shared.profile_soon.store(true, Ordering::Relaxed);
    }
}

/// The file of the loaded object with build-id `id`, if it still holds
/// that build: the running executable through `/proc/self/exe`, which
/// stays the same file when a deploy replaces it on disk.
fn file_of(objects: &[crate::objects::Loaded], id: &str) -> Option<String> {
    let hex = crate::objects::hex;
    let (i, o) = objects
        .iter()
        .enumerate()
        .find(|(_, o)| o.build_id.as_deref().map(hex).as_deref() == Some(id))?;
    let path = if i == 0 {
        "/proc/self/exe".to_owned()
    } else {
        o.path.clone()
    };
    (heaptide_symbols::build_id(&path).as_deref() == Some(id)).then_some(path)
}

fn upload(shared: &Shared, http: &ureq::Agent, id: &str, path: &str) -> Result<(), String> {
    let a = &shared.agent_info;
    let url = format!(
        "{}{}",
        shared.config.endpoint,
        heaptide_wire::debuginfo_path(id)
    );
    let mut req = http
        .put(&url)
        .query("service", &a.service)
        .query("instance", &a.instance)
        .config()
        .timeout_global(Some(UPLOAD_TIMEOUT))
        .build()
        .header("Content-Type", "application/octet-stream");
    if let Some(token) = &shared.config.token {
        req = req.header("Authorization", &format!("Bearer {token}"));
    }
    // What names addresses, without the code and data: 13% less of the
    // example's release build, which carries full DWARF, and nearly all of
    // a stripped library (94% of libc). Any other file goes whole.
    let sent = match heaptide_symbols::DebugOnly::open(path) {
        Some(body) => {
            let len = body.len();
            req.header("Content-Length", &len.to_string())
                .send(ureq::SendBody::from_owned_reader(body))
        }
        None => {
            let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
            req.send(file)
        }
    };
    let mut resp = sent.map_err(|e| e.to_string())?;
    let _ = resp.body_mut().with_config().limit(64 << 10).read_to_vec();
    match resp.status().as_u16() {
        200..=299 => Ok(()),
        s => Err(format!("HTTP {s}")),
    }
}
