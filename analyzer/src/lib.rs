#![doc = include_str!("../README.md")]

pub mod alerts;
pub mod budget;
pub mod check;
pub mod config;
pub mod demo;
pub mod detect;
pub mod error;
pub mod evaluate;
pub mod flames;
pub mod foreign;
pub mod ingest;
pub mod query;
pub mod report;
pub mod select;
pub mod server;
pub mod service_page;
pub mod store;
pub mod views;

use std::sync::Arc;

pub use error::{Error, Result};

/// Runs `analyzer serve` until `shutdown` resolves. `on_listen` is told the
/// bound address once the server accepts connections.
pub async fn serve(
    cfg: config::ServeConfig,
    on_listen: impl FnOnce(std::net::SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let store = store::open(&cfg.store, cfg.durability, cfg.bounds.clone())?;
    let state = Arc::new(server::AppState::new(store, cfg.server.clone()));
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    on_listen(listener.local_addr()?);
    let background = server::Background {
        retention: store::RetentionPolicy::with_retention(select::ms(cfg.retention)),
        evaluate_every: cfg.evaluate_every,
        external_url: cfg.alerts.external_url.clone().unwrap_or_default(),
        alerts: cfg.alerts,
        webhooks: cfg.webhooks,
        scrape: cfg.scrape,
        scrape_every: cfg.scrape_every,
        shard: cfg.shard,
    };
    server::run(listener, state, background, shutdown).await
}
