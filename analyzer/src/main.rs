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
    /// List suspected leaks, worst first. Exits 0 whatever it finds.
    Leaks(Analysis),
    /// Predict when each resource of each instance reaches its limit.
    Predict {
        #[command(flatten)]
        analysis: Analysis,
        /// Only exhaustion within this long is predicted.
        #[arg(long, default_value = "7d")]
        horizon: String,
    },
    /// Gate a run on growth budgets: exit 0 pass, 1 over budget, 2 error.
    Check {
        /// The budget file (TOML; see docs/budgets.md).
        #[arg(long)]
        budget: PathBuf,
        #[arg(long, default_value = "10m")]
        since: String,
        #[arg(long)]
        service: Option<String>,
        /// A result saved from the main branch with --save-baseline.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Save this run's rates as a baseline.
        #[arg(long)]
        save_baseline: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: CheckFormat,
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Run the quickstart: an analyzer, the leaky example under load, the
    /// dashboard, and the leak it finds.
    Demo {
        /// Exit once the leak is reported instead of serving until Ctrl-C.
        #[arg(long)]
        exit_when_found: bool,
        /// Give up if nothing is found in this long.
        #[arg(long, default_value = "5m")]
        timeout: String,
    },
    /// Print the store's size, and bytes per agent-day.
    Stats {
        #[arg(long)]
        store: Option<PathBuf>,
    },
}

/// What `leaks` and `predict` look at.
#[derive(clap::Args)]
struct Analysis {
    /// How far back to look.
    #[arg(long, default_value = "24h")]
    since: String,
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    instance: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    #[arg(long)]
    store: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckFormat {
    Text,
    Json,
    Junit,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
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

/// Runs the engine; also returns the findings that lacked data, which the
/// table mentions.
fn analyze(
    a: &Analysis,
) -> anyhow::Result<(
    heaptide_analyzer::detect::Analysis,
    Vec<heaptide_analyzer::detect::Finding>,
)> {
    use heaptide_analyzer::detect;
    let (service, instance) = (a.service.clone(), a.instance.clone());
    let path = heaptide_analyzer::config::store_path(a.store.clone(), env);
    let store = heaptide_analyzer::store::SqliteStore::open_existing(&path)?;
    let now = heaptide_analyzer::query::now_ms();
    let (from_ms, to_ms) = heaptide_analyzer::query::window(Some(&a.since), None, None, now)?;
    let q = detect::Query {
        service: service.clone(),
        instance,
        from_ms,
        to_ms,
    };
    let analysis = detect::analyze(&store, &q, &detect::Options::default())?;
    if analysis.findings.is_empty() {
        let what = service
            .map(|s| format!("service {s:?}"))
            .unwrap_or_else(|| "any service".into());
        anyhow::bail!(
            "no data for {what} in {} (is an agent sending to it?)",
            path.display()
        );
    }
    let insufficient = analysis
        .findings
        .iter()
        .filter(|f| f.verdict == detect::Verdict::InsufficientData)
        .cloned()
        .collect();
    Ok((analysis, insufficient))
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
        Command::Leaks(a) => {
            let (analysis, insufficient) = analyze(&a)?;
            match a.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&analysis.leaks())?),
                Format::Table => print!(
                    "{}",
                    heaptide_analyzer::report::leaks_table(&analysis, &insufficient)
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Predict {
            analysis: a,
            horizon,
        } => {
            let horizon_ms = heaptide_analyzer::query::parse_duration_ms("horizon", &horizon)?;
            let (mut analysis, _) = analyze(&a)?;
            for f in &mut analysis.findings {
                if f.time_to_exhaustion_seconds
                    .is_some_and(|t| t * 1000.0 > horizon_ms as f64)
                {
                    f.reason = format!("{}; exhaustion beyond the {horizon} horizon", f.reason);
                }
            }
            match a.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&analysis)?),
                Format::Table => print!(
                    "{}",
                    heaptide_analyzer::report::predict_table(&analysis, horizon_ms as f64 / 1000.0)
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            budget,
            since,
            service,
            baseline,
            save_baseline,
            format,
            store,
        } => {
            use heaptide_analyzer::check;
            let budgets = heaptide_analyzer::budget::BudgetFile::load(&budget)?;
            let baseline: Option<check::Baseline> = match baseline {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("reading baseline {}", p.display()))?;
                    Some(serde_json::from_str(&text).with_context(|| {
                        format!("baseline {} is not a saved check result", p.display())
                    })?)
                }
                None => None,
            };
            let path = heaptide_analyzer::config::store_path(store, env);
            let store = heaptide_analyzer::store::SqliteStore::open_existing(&path)?;
            let now = heaptide_analyzer::query::now_ms();
            let (from_ms, to_ms) = heaptide_analyzer::query::window(Some(&since), None, None, now)?;
            let q = check::CheckQuery {
                service: service.as_deref(),
                from_ms,
                to_ms,
                baseline: baseline.as_ref(),
            };
            let result = check::check(&store, &budgets, &q)?;
            match format {
                CheckFormat::Text => print!("{}", check::text(&result)),
                CheckFormat::Json => println!("{}", serde_json::to_string_pretty(&result)?),
                CheckFormat::Junit => print!("{}", check::junit(&result)),
            }
            if let Some(p) = save_baseline {
                let b = check::Baseline::from_result(&result);
                std::fs::write(&p, serde_json::to_string_pretty(&b)?)
                    .with_context(|| format!("writing baseline {}", p.display()))?;
            }
            if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&summary)
                    .context("opening GITHUB_STEP_SUMMARY")?;
                f.write_all(check::markdown(&result).as_bytes())?;
            }
            Ok(if result.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Demo {
            exit_when_found,
            timeout,
        } => {
            let timeout = humantime::parse_duration(&timeout).context("--timeout")?;
            let bin_dir = std::env::current_exe()?
                .parent()
                .map(std::path::Path::to_path_buf)
                .context("locating the analyzer's directory")?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            rt.block_on(heaptide_analyzer::demo::run(
                heaptide_analyzer::demo::DemoOptions {
                    bin_dir,
                    exit_when_found,
                    timeout,
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
