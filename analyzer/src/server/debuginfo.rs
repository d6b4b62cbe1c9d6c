//! `PUT /v1/debuginfo/{build_id}?service=&instance=`: an agent's upload of
//! the object file of a build-id the analyzer asked it for (in the reply
//! to one of its batches, `debuginfo_wanted`).
//!
//! Only the agent that holds the build-id's claim may upload it (see
//! [`crate::symbols::Claims`]), so a token cannot push a file nobody asked
//! for, and a fleet uploads each build once. The body is streamed to a
//! temporary file under the symbol cache, never held whole, bounded by
//! [`MAX_BYTES`]; it is kept only if it is an object file with that very
//! build-id, and then renamed into place. The next profile of every
//! instance that runs the build is named from it.

use std::io::Write;
use std::sync::Arc;

use axum::body::HttpBody;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::error::{blocking, ApiError, ApiResult};
use super::AppState;

use crate::symbols::MAX_FILE_BYTES as MAX_BYTES;
/// Bytes gathered before each write to disk.
const CHUNK: usize = 4 << 20;

#[derive(serde::Deserialize)]
pub(super) struct Who {
    service: String,
    instance: String,
}

/// Who holds a claim: the token, and the agent it was asked of.
pub(super) fn holder(caller: &Caller, service: &str, instance: &str) -> String {
    format!("{}\u{0}{service}\u{0}{instance}", caller.name())
}

pub(super) async fn upload(
    State(state): State<Arc<AppState>>,
    Path(build_id): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    // Who asks comes before what is asked.
    let caller = state.auth.caller(req.headers());
    if !caller.ingests_any() {
        return Err(caller.refusal("upload debug files"));
    }
    let Query(who) =
        Query::<Who>::try_from_uri(req.uri()).map_err(|e| ApiError::bad("query", e.body_text()))?;
    if !caller.ingests(&who.service) {
        return Err(caller.refusal(&format!("upload debug files for service {:?}", who.service)));
    }
    if !crate::symbols::fill::is_build_id(&build_id) {
        return Err(ApiError::bad("build_id", "expected 4 to 64 hex digits"));
    }
    let symbols = state.symbols.clone();
    if symbols.files().has(&build_id) {
        return Ok(StatusCode::OK.into_response());
    }
    if !symbols
        .claims
        .holds(&build_id, &holder(&caller, &who.service, &who.instance))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("build-id {build_id} was not asked of this agent (or its claim lapsed)"),
        ));
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .ok_or_else(|| ApiError::new(StatusCode::LENGTH_REQUIRED, "Content-Length is required"))?;
    if declared > MAX_BYTES {
        return Err(too_large());
    }
    let tmp = symbols
        .files()
        .temporary(&build_id)
        .map_err(crate::Error::from)?;
    let received = receive(req, &tmp, declared).await;
    let id = build_id.clone();
    let kept = match received {
        Ok(()) => blocking(move || symbols.files().adopt(&tmp, &id)).await,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    };
    kept?;
    tracing::info!(
        "kept the debug file of build-id {build_id} ({declared} bytes), uploaded by {}/{}",
        who.service,
        who.instance
    );
    state.symbols.claims.release(&build_id);
    state
        .symbols
        .counts
        .uploads
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(StatusCode::CREATED.into_response())
}

fn too_large() -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        ..ApiError::bad("body", format!("larger than {MAX_BYTES} bytes"))
    }
}

/// Streams the body into `to`, refusing more than `declared` bytes.
async fn receive(req: Request, to: &std::path::Path, declared: u64) -> ApiResult<()> {
    let mut file = std::fs::File::create(to).map_err(crate::Error::from)?;
    let mut body = req.into_body();
    let mut buf = Vec::with_capacity(CHUNK);
    let mut total = 0u64;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        let done = frame.is_none();
        if let Some(frame) = frame {
            let frame = frame.map_err(|e| ApiError::bad("body", e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                total += data.len() as u64;
                if total > declared {
                    return Err(ApiError::bad("body", "longer than its Content-Length"));
                }
                buf.extend_from_slice(&data);
            }
        }
        // Written from a blocking thread, a few MiB at a time.
        if buf.len() >= CHUNK || (done && !buf.is_empty()) {
            let chunk = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK));
            file = blocking(move || {
                file.write_all(&chunk)?;
                Ok(file)
            })
            .await?;
        }
        if done {
            break;
        }
    }
    if total != declared {
        return Err(ApiError::bad("body", "shorter than its Content-Length"));
    }
    Ok(())
}
