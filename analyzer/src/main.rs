//! `analyzer`: the heaptide analyzer's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use heaptide_analyzer::config::{FileConfig, Layer, ServeConfig};

#[derive(Parser)]
#[command(
    name = "analyzer",
    version,
    about = "heaptide analyzer: ingest, store and analyze agent data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive agent data, store it and serve the read API and dashboards.
    Serve {
        /// Address to listen on [default: 127.0.0.1:4040].
        #[arg(long)]
        listen: Option<String>,
        /// SQLite store [default: $HEAPTIDE_STORE, else ./heaptide.db].
        #[arg(long)]
        store: Option<PathBuf>,
        /// How long data is kept [default: 7d].
        #[arg(long)]
        retention: Option<String>,
        /// File holding the bearer token agents must send.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// TOML file with the same settings; flags and environment win.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the store's size, and bytes per agent-day.
    Stats {
        #[arg(long)]
        store: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("analyzer: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            listen,
            store,
            retention,
            token_file,
            config,
        } => {
            let file = config.as_deref().map(FileConfig::load).transpose()?;
            let flags = Layer {
                listen,
                store,
                retention,
                token_file,
                rate_limit: None,
            };
            let cfg = ServeConfig::resolve(flags, env, file)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            let store = cfg.store.display().to_string();
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
        Command::Stats { store } => {
            let path = heaptide_analyzer::config::store_path(store, env);
            let store = heaptide_analyzer::store::SqliteStore::open_existing(&path)?;
            let stats = heaptide_analyzer::store::Store::stats(&store)?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
