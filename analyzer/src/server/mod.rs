//! The HTTP server: ingest, the read API (`docs/api.md`) and the
//! dashboards, built by one [`app`] for `serve`, `demo` and the tests.

mod api;
mod dashboards;
pub mod error;
mod ingest;
pub mod params;

use std::sync::Arc;

use axum::routing::post;
use axum::Router;

pub use error::{ApiError, ApiResult};
pub use ingest::{RateLimit, RateLimiter};

use crate::store::{RetentionPolicy, Store};

/// What every handler shares.
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The bearer token agents must send, if any.
    pub token: Option<String>,
    pub limits: crate::ingest::Limits,
    pub rate: RateLimiter,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        token: Option<String>,
        limits: crate::ingest::Limits,
        rate: RateLimit,
    ) -> Self {
        AppState {
            store,
            token,
            limits,
            rate: RateLimiter::new(rate),
        }
    }
}

/// Every route: ingest, the read API and the dashboards.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route(heaptide_wire::INGEST_PATH, post(ingest::handler))
        .merge(api::routes())
        .merge(dashboards::routes())
        .with_state(state)
}

/// What the server does besides answering requests.
#[derive(Debug, Clone)]
pub struct Background {
    pub retention: RetentionPolicy,
    /// How often every instance is judged and its findings kept.
    pub evaluate_every: std::time::Duration,
}

/// Serves [`app`] on `listener`, with retention applied at start and every
/// ten minutes and continuous evaluation, until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    background: Background,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let retention = tokio::spawn(retention_loop(state.store.clone(), background.retention));
    let evaluation = tokio::spawn(evaluation_loop(
        state.store.clone(),
        background.evaluate_every,
    ));
    let result = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await;
    retention.abort();
    evaluation.abort();
    Ok(result?)
}

async fn evaluation_loop(store: Arc<dyn Store>, every: std::time::Duration) {
    loop {
        let s = store.clone();
        let now = crate::select::now_ms();
        match tokio::task::spawn_blocking(move || crate::evaluate::evaluate(&*s, now)).await {
            Ok(Ok(p)) => tracing::debug!(?p, "evaluation pass"),
            Ok(Err(e)) => tracing::warn!("evaluation pass failed: {e}"),
            Err(_) => tracing::warn!("evaluation pass panicked"),
        }
        tokio::time::sleep(every).await;
    }
}

async fn retention_loop(store: Arc<dyn Store>, policy: RetentionPolicy) {
    loop {
        let (s, p) = (store.clone(), policy.clone());
        let now = crate::select::now_ms();
        match tokio::task::spawn_blocking(move || s.retain(now, &p)).await {
            Ok(Ok(r)) => tracing::debug!(?r, "retention pass"),
            Ok(Err(e)) => tracing::warn!("retention pass failed: {e}"),
            Err(_) => tracing::warn!("retention pass panicked"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    }
}
