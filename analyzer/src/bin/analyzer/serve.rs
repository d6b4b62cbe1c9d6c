//! `analyzer serve`: ingest, the read API and the dashboards.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use heaptide_analyzer::config::{FileConfig, Layer, ServeConfig};

use crate::args::StoreArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on [default: 127.0.0.1:4040].
    #[arg(long, env = "HEAPTIDE_LISTEN")]
    pub listen: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// How long data is kept [default: 7d].
    #[arg(long, env = "HEAPTIDE_RETENTION", value_parser = humantime::parse_duration)]
    pub retention: Option<Duration>,
    /// How often every instance is judged and its findings kept [default: 1m].
    #[arg(long, env = "HEAPTIDE_EVALUATE_EVERY", value_parser = humantime::parse_duration)]
    pub evaluate_every: Option<Duration>,
    /// File holding the bearer token agents must send; it also grants
    /// reading.
    #[arg(long, env = "HEAPTIDE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// File holding a token that grants only reading: the pages, the read
    /// API and /metrics.
    #[arg(long, env = "HEAPTIDE_READ_TOKEN_FILE")]
    pub read_token_file: Option<PathBuf>,
    /// Batches per second allowed per agent, keyed on its token and
    /// address [default: 5].
    #[arg(long, env = "HEAPTIDE_RATE_LIMIT")]
    pub rate_limit: Option<f64>,
    /// When a commit is on disk: normal (survives the analyzer being
    /// killed) or full (also an OS crash) [default: normal].
    #[arg(long, env = "HEAPTIDE_DURABILITY")]
    pub durability: Option<heaptide_analyzer::store::Durability>,
    /// INDEX/COUNT, like 0/2: the share of services this analyzer
    /// evaluates and alerts on, when several share a ClickHouse store
    /// [default: 0/1, all].
    #[arg(long, env = "HEAPTIDE_SHARD")]
    pub shard: Option<String>,
    /// Instances one service may have [default: 10000].
    #[arg(long)]
    pub max_instances_per_service: Option<u64>,
    /// Requests served at once; past it, 503 at once [default: 512].
    #[arg(long)]
    pub max_concurrent_requests: Option<usize>,
    /// The longest any request may take, body included [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub request_timeout: Option<Duration>,
    /// Sends alerts to this URL as Alertmanager's webhook payload
    /// (repeatable; added to the config's `[[alerts.webhook]]`).
    #[arg(long = "alert-webhook", value_name = "URL")]
    pub alert_webhooks: Vec<String>,
    /// Pulls heap profiles from a pprof endpoint (Go's /debug/pprof/heap,
    /// jemalloc_pprof) as service NAME (repeatable).
    #[arg(long = "scrape", value_name = "NAME=URL")]
    pub scrape: Vec<String>,
    /// How often each --scrape target is pulled [default: 1m].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub scrape_interval: Option<Duration>,
    /// TOML file with the same settings; flags and environment win.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let file = a.config.as_deref().map(FileConfig::load).transpose()?;
    let flags = Layer {
        listen: a.listen,
        store: a.store.store,
        shard: a.shard,
        retention: a.retention,
        token_file: a.token_file,
        read_token_file: a.read_token_file,
        rate_limit: a.rate_limit,
        evaluate_every: a.evaluate_every,
        durability: a.durability,
        max_instances_per_service: a.max_instances_per_service,
        max_services: None,
        max_concurrent_requests: a.max_concurrent_requests,
        request_timeout: a.request_timeout,
        alert_webhooks: a.alert_webhooks,
        scrape: a.scrape,
        scrape_interval: a.scrape_interval,
    };
    let cfg = ServeConfig::resolve(flags, |k| std::env::var(k).ok(), file)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let store = cfg.store.to_string();
    rt.block_on(heaptide_analyzer::serve(
        cfg,
        |addr| {
            use std::io::Write;
            println!("analyzer: listening on http://{addr} (store {store})");
            let _ = std::io::stdout().flush();
        },
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    ))?;
    Ok(ExitCode::SUCCESS)
}
