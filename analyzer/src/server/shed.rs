//! Load shedding for every route: a bound on requests in flight, past
//! which the server answers 503 at once instead of queueing, and a
//! deadline on each request, body included, so that a slow client cannot
//! hold a slot for ever (`tower`'s `GlobalConcurrencyLimit`, `LoadShed`
//! and `Timeout`).

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;

use super::ApiError;

#[derive(Debug, Clone)]
pub(super) struct Shedding {
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
}

impl Shedding {
    /// `router` behind the limit and the deadline.
    pub(super) fn apply(&self, router: axum::Router) -> axum::Router {
        let timeout = self.request_timeout;
        router.layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(
                    move |e: tower::BoxError| async move { refusal(&e, timeout) },
                ))
                .load_shed()
                // One semaphore for every route: `Router::layer` wraps each
                // route on its own, and a per-route limit is no limit.
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    self.max_concurrent_requests,
                ))
                .timeout(timeout),
        )
    }
}

fn refusal(e: &tower::BoxError, timeout: Duration) -> Response {
    let (status, message) = if e.is::<tower::load_shed::error::Overloaded>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the analyzer is serving as many requests as it may; try again later".to_owned(),
        )
    } else if e.is::<tower::timeout::error::Elapsed>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {}s", timeout.as_secs()),
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
