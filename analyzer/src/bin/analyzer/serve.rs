//! `analyzer serve`: ingest, the read API and the dashboards.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use heaptide_analyzer::config::{ServeConfig, Settings};

/// Every setting is declared once, in `heaptide_analyzer::config`; this
/// adds only the file to read them from.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub settings: Settings,
    /// TOML file with the same settings; flags and environment win.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let file = a.config.as_deref().map(Settings::load).transpose()?;
    let flags = a.settings;
    let cfg = ServeConfig::resolve(flags, |k| std::env::var(k).ok(), file)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let store = cfg.store.to_string();
    let scheme = cfg.scheme();
    rt.block_on(heaptide_analyzer::serve(
        cfg,
        |addr| {
            use std::io::Write;
            println!("analyzer: listening on {scheme}://{addr} (store {store})");
            let _ = std::io::stdout().flush();
        },
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    ))?;
    Ok(ExitCode::SUCCESS)
}
