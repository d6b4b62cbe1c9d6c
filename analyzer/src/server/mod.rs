//! The HTTP server: ingest, the read API (`docs/api.md`) and the
//! dashboards, built by one [`app`] for `serve`, `demo` and the tests.

mod api;
pub mod auth;
pub mod conn;
mod dashboards;
mod deadline;
mod debuginfo;
pub mod error;
mod headers;
mod ingest;
mod metrics;
pub mod params;
pub mod routes;
mod scrape;
pub mod session;
mod shed;
pub mod telemetry;
pub mod tls;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;

pub use error::ApiError;
pub use ingest::{RateLimit, RateLimiter};
pub use telemetry::Telemetry;

use crate::store::{RetentionPolicy, Store};

/// What every handler shares.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: auth::Auth,
    pub limits: crate::ingest::Limits,
    /// Metric names admitted, per instance and in all.
    pub names: Arc<crate::ingest::names::NameLedger>,
    pub rate: RateLimiter,
    gates: ingest::IngestGates,
    pub telemetry: Telemetry,
    shed: shed::Shedding,
    connections: conn::ConnectionLimits,
    /// Services whose batches said a resource is about to run out, for
    /// the schedule to judge at once.
    pub urgent: Arc<crate::continuous::schedule::Urgent>,
    /// Names what agents send unnamed.
    pub symbols: Arc<crate::symbols::Symbols>,
}

/// The server's settings besides its store.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The tokens in force at start (empty: no authentication).
    pub tokens: tokens::TokenSet,
    /// Where they came from, read again on SIGHUP.
    pub token_source: tokens::TokenSource,
    /// The key session cookies are signed with; `None` when the OS gave
    /// no randomness for one.
    pub session_key: Option<Arc<session::SessionKey>>,
    /// Session cookies carry `Secure`: browsers reach the server over TLS.
    pub secure_cookies: bool,
    pub limits: crate::ingest::Limits,
    /// Caps on distinct metric names.
    pub names: crate::ingest::names::NameCaps,
    pub rate: RateLimit,
    /// Requests served at once; past it, a 503 at once.
    pub max_concurrent_requests: usize,
    /// The longest any request may take, body included.
    pub request_timeout: Duration,
    /// Bounds on connections and their deadlines.
    pub connections: conn::ConnectionLimits,
    /// Where debug files are found and kept.
    pub symbols: SymbolOptions,
}

/// Where the analyzer's symbolizer finds debug files and keeps them.
#[derive(Debug, Clone, Default)]
pub struct SymbolOptions {
    pub dirs: Vec<std::path::PathBuf>,
    /// A debuginfod server's base URL, asked after the directories.
    pub debuginfod: Option<String>,
    /// `None`: `heaptide-debug` in the temporary directory.
    pub cache: Option<std::path::PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            tokens: Default::default(),
            token_source: Default::default(),
            session_key: session::SessionKey::random().ok().map(Arc::new),
            secure_cookies: false,
            limits: Default::default(),
            names: Default::default(),
            rate: Default::default(),
            max_concurrent_requests: crate::config::DEFAULT_MAX_CONCURRENT_REQUESTS,
            request_timeout: crate::config::DEFAULT_REQUEST_TIMEOUT.0,
            connections: Default::default(),
            symbols: Default::default(),
        }
    }
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, options: ServerOptions) -> Self {
        AppState {
            store,
            auth: auth::Auth::new(
                options.tokens,
                options.token_source,
                options.session_key,
                options.secure_cookies,
            ),
            limits: options.limits,
            names: Arc::new(crate::ingest::names::NameLedger::new(options.names)),
            rate: RateLimiter::new(options.rate),
            gates: Default::default(),
            telemetry: Telemetry::default(),
            shed: shed::Shedding {
                max_concurrent_requests: options.max_concurrent_requests,
                request_timeout: options.request_timeout,
            },
            connections: options.connections,
            urgent: Default::default(),
            symbols: Arc::new(crate::symbols::Symbols::new(
                options.symbols.dirs,
                options.symbols.debuginfod,
                options.symbols.cache.unwrap_or_else(|| {
                    // One place for every run: files are named by build-id
                    // and renamed into place whole, so a restarted (or a
                    // second) analyzer reuses them rather than leaving a
                    // copy of every binary behind each run.
                    std::env::temp_dir().join("heaptide-debug")
                }),
            )),
        }
    }
}

/// Every route ([`routes::table`]): ingest, the read API and the
/// dashboards, behind the read check, the security headers and load
/// shedding.
pub fn app(state: Arc<AppState>) -> Router {
    let routes = routes::router(&state);
    let shed = state.shed.clone();
    let router = routes
        .with_state(state)
        .layer(axum::middleware::from_fn(headers::security));
    shed.apply(router)
}

async fn health() -> &'static str {
    "ok\n"
}

/// What the server does besides answering requests.
#[derive(Debug, Clone)]
pub struct Background {
    pub retention: RetentionPolicy,
    /// How often every instance is judged and its findings kept.
    pub evaluate_every: std::time::Duration,
    pub alerts: crate::continuous::alerts::AlertRules,
    pub webhooks: Vec<crate::continuous::alerts::notify::Webhook>,
    /// The base of links in notifications.
    pub external_url: String,
    /// pprof endpoints pulled every `scrape_every`.
    pub scrape: Vec<crate::ingest::foreign::ScrapeTarget>,
    pub scrape_every: std::time::Duration,
    /// The services this analyzer evaluates and alerts on.
    pub shard: crate::store::Shard,
}

impl Background {
    /// Retention, evaluation every `evaluate_every`, the default alert
    /// rules and no webhooks.
    pub fn new(retention: RetentionPolicy, evaluate_every: std::time::Duration) -> Self {
        Background {
            retention,
            evaluate_every,
            alerts: Default::default(),
            webhooks: Vec::new(),
            external_url: String::new(),
            scrape: Vec::new(),
            scrape_every: std::time::Duration::from_secs(60),
            shard: Default::default(),
        }
    }
}

/// Runs `analyzer serve` until `shutdown` resolves. `on_listen` is told the
/// bound address once the server accepts connections.
pub async fn serve(
    cfg: crate::config::ServeConfig,
    on_listen: impl FnOnce(std::net::SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let store = crate::store::open(&cfg.store, cfg.durability, cfg.bounds.clone())?;
    let mut options = cfg.server.clone();
    if let (None, crate::store::Location::Sqlite(path)) = (&options.symbols.cache, &cfg.store) {
        let mut beside = path.clone().into_os_string();
        beside.push(".debug");
        options.symbols.cache = Some(beside.into());
    }
    options.connections.max_total = conn::fit_to_fd_limit(options.connections.max_total);
    let state = Arc::new(AppState::new(store, options));
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    on_listen(listener.local_addr()?);
    let background = Background {
        retention: RetentionPolicy::with_retention(crate::select::ms(cfg.retention)),
        evaluate_every: cfg.evaluate_every,
        external_url: cfg.alerts.external_url.clone().unwrap_or_default(),
        alerts: cfg.alerts,
        webhooks: cfg.webhooks,
        scrape: cfg.scrape,
        scrape_every: cfg.scrape_every,
        shard: cfg.shard,
    };
    run(listener, state, background, shutdown).await
}

/// Serves [`app`] on `listener`, with retention applied at start and every
/// ten minutes and continuous evaluation with alerts, until `shutdown`
/// resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    background: Background,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let external_url = if background.external_url.is_empty() {
        let scheme = state.connections.scheme();
        format!("{scheme}://{}", listener.local_addr()?)
    } else {
        background.external_url.clone()
    };
    let notifier =
        crate::continuous::alerts::notify::Notifier::start(background.webhooks, external_url)?;
    if let Ok(mut hooks) = state.telemetry.webhooks.lock() {
        *hooks = notifier.stats();
    }
    let retention = tokio::spawn(retention_loop(
        state.store.clone(),
        state.names.clone(),
        background.retention,
    ));
    let evaluation = tokio::spawn(crate::continuous::schedule::run(
        state.store.clone(),
        crate::continuous::schedule::Meters {
            seconds: state.telemetry.evaluation_seconds.clone(),
            failures: state.telemetry.evaluation_failures.clone(),
            last_seconds: state.telemetry.evaluation_last_seconds.clone(),
            judged: state.telemetry.evaluation_judged.clone(),
            behind: state.telemetry.evaluation_behind.clone(),
        },
        crate::continuous::schedule::Plan {
            rules: background.alerts,
            notifier,
            every: background.evaluate_every,
            shard: background.shard,
        },
        state.urgent.clone(),
    ));
    let scrapes: Vec<_> = background
        .scrape
        .into_iter()
        .map(|t| {
            tokio::spawn(scrape::scrape_loop(
                state.clone(),
                t,
                background.scrape_every,
            ))
        })
        .collect();
    let reloads = tokio::spawn(reload_tokens_on_hangup(state.clone()));
    let limits = state.connections.clone();
    let meters = state.telemetry.connections.clone();
    conn::serve(listener, app(state), limits, meters, shutdown).await;
    retention.abort();
    reloads.abort();
    evaluation.abort();
    scrapes.iter().for_each(tokio::task::JoinHandle::abort);
    Ok(())
}

/// Reads the token files again on each SIGHUP. A file that fails to
/// read or parse leaves the tokens in force, and the log says why.
async fn reload_tokens_on_hangup(state: Arc<AppState>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: tokens are read only at start");
        return;
    };
    while hangups.recv().await.is_some() {
        let outcome = match state.auth.reload() {
            Ok(n) => {
                tracing::info!("SIGHUP: {n} tokens in force");
                "ok"
            }
            Err(e) => {
                tracing::error!(
                    "SIGHUP: tokens not reloaded, the previous ones stay in force: {e}"
                );
                "failed"
            }
        };
        state
            .telemetry
            .token_reloads
            .with_label_values(&[outcome])
            .inc();
    }
}

/// Retention at start and every ten minutes; then the metric-name ledger
/// takes the store's names, so that expired names free their place.
async fn retention_loop(
    store: Arc<dyn Store>,
    names: Arc<crate::ingest::names::NameLedger>,
    policy: RetentionPolicy,
) {
    loop {
        let (s, p) = (store.clone(), policy.clone());
        let now = crate::select::now_ms();
        let pass = tokio::task::spawn_blocking(move || {
            let report = s.retain(now, &p)?;
            Ok::<_, crate::Error>((report, s.all_metric_names()?))
        });
        match pass.await {
            Ok(Ok((r, known))) => {
                tracing::debug!(?r, "retention pass");
                names.reseed(known, now);
            }
            Ok(Err(e)) => tracing::warn!("retention pass failed: {e}"),
            Err(_) => tracing::warn!("retention pass panicked"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    }
}
