#![doc = include_str!("../README.md")]

pub mod budget;
pub mod check;
pub mod config;
pub mod demo;
pub mod detect;
pub mod error;
pub mod ingest;
pub mod query;
pub mod report;
pub mod server;
pub mod store;
pub mod ui_source;

use std::sync::Arc;

pub use error::{Error, Result};

/// Runs `analyzer serve` until `shutdown` resolves. `on_listen` is told the
/// bound address once the server accepts connections.
pub async fn serve(
    cfg: config::ServeConfig,
    on_listen: impl FnOnce(std::net::SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let store: Arc<dyn store::Store> = Arc::new(store::SqliteStore::open(&cfg.store)?);
    let state = Arc::new(server::AppState::new(
        store.clone(),
        cfg.token.clone(),
        ingest::Limits::default(),
        server::RateLimit {
            per_second: cfg.rate_limit,
            burst: (cfg.rate_limit * 4.0).max(4.0),
        },
    ));
    let ui = heaptide_ui::router(Arc::new(ui_source::UiSource {
        store: store.clone(),
    }));
    let app = server::api_router(state).merge(ui);
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    on_listen(listener.local_addr()?);
    let policy = store::RetentionPolicy::with_retention(cfg.retention.as_millis() as i64);
    let retention = tokio::spawn(retention_loop(store, policy));
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    retention.abort();
    Ok(result?)
}

/// Applies retention at start and then every ten minutes.
async fn retention_loop(store: Arc<dyn store::Store>, policy: store::RetentionPolicy) {
    loop {
        let (s, p) = (store.clone(), policy.clone());
        match tokio::task::spawn_blocking(move || s.retain(query::now_ms(), &p)).await {
            Ok(Ok(r)) => tracing::debug!(?r, "retention pass"),
            Ok(Err(e)) => tracing::warn!("retention pass failed: {e}"),
            Err(_) => tracing::warn!("retention pass panicked"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    }
}
