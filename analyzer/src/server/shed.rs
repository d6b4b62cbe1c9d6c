//! Load shedding for every route: a bound on requests in flight, past
//! which the server answers 503 at once instead of queueing, and a
//! deadline on each request, body included, so that a slow client cannot
//! hold a slot for ever (`tower`'s `GlobalConcurrencyLimit` and
//! `LoadShed`, and a deadline of our own).
//!
//! A debug file's upload may be far larger than any batch, so its deadline
//! grows with its declared length at [`MIN_UPLOAD_RATE`]: a large binary
//! on a slow link lands, and a client that trickles still meets a bound.
//! Only the agent the analyzer asked may upload (`debuginfo.rs`), so at
//! most one such request a build-id is in flight.

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;

use super::ApiError;

/// The slowest an upload may arrive, in bytes a second, on top of the
/// request timeout.
pub(super) const MIN_UPLOAD_RATE: u64 = 1 << 20;

#[derive(Debug, Clone)]
pub(super) struct Shedding {
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
}

impl Shedding {
    /// `router` behind the limit and the deadline.
    pub(super) fn apply(&self, router: axum::Router) -> axum::Router {
        let timeout = self.request_timeout;
        router
            .layer(axum::middleware::from_fn_with_state(timeout, deadline))
            .layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(|e: tower::BoxError| async move {
                        refusal(&e)
                    }))
                    .load_shed()
                    // One semaphore for every route: `Router::layer` wraps
                    // each route on its own, and a per-route limit is no
                    // limit.
                    .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                        self.max_concurrent_requests,
                    )),
            )
    }
}

/// Runs the request within its deadline: `timeout`, and for a debug
/// file's upload its declared length at [`MIN_UPLOAD_RATE`] on top.
async fn deadline(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let limit = timeout + upload_allowance(&req);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError {
            retry_after: Some(Duration::from_secs(1)),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the request took longer than {}s", limit.as_secs()),
            )
        }
        .into_response(),
    }
}

fn upload_allowance(req: &Request) -> Duration {
    let prefix = heaptide_wire::DEBUGINFO_PATH.trim_end_matches("{build_id}");
    let upload = req.method() == Method::PUT && req.uri().path().starts_with(prefix);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        // The route refuses more than its bound before reading a byte.
        Some(n) if upload => {
            Duration::from_secs(n.min(crate::symbols::MAX_FILE_BYTES) / MIN_UPLOAD_RATE)
        }
        _ => Duration::ZERO,
    }
}

fn refusal(e: &tower::BoxError) -> Response {
    let (status, message) = if e.is::<tower::load_shed::error::Overloaded>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the analyzer is serving as many requests as it may; try again later".to_owned(),
        )
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request failed".to_owned(),
        )
    };
    ApiError {
        retry_after: Some(Duration::from_secs(1)),
        ..ApiError::new(status, message)
    }
    .into_response()
}
