//! `analyzer`: the heaptide analyzer's command line. Each command is a
//! file of its own; this one parses, sets up logging and maps the outcome
//! to an exit code: 0 success, 1 a failed `check`, 2 an error.

mod args;
mod check;
mod demo;
mod leaks;
mod out;
mod predict;
mod serve;
mod stats;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Serve(Box<serve::Args>),
    /// List suspected leaks, worst first. Exits 0 whatever it finds.
    Leaks(args::FindingsArgs),
    /// Predict when each resource of each instance reaches its limit.
    Predict(predict::Args),
    /// Gate a run on growth budgets: exit 0 pass, 1 over budget, 2 error.
    Check(check::Args),
    /// Run the quickstart: an analyzer, the leaky example under load, the
    /// dashboard, and the leak it finds.
    Demo(demo::Args),
    /// Print the store's size, and bytes per agent-day.
    Stats(args::StoreArgs),
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
    let outcome = match cli.command {
        Command::Serve(a) => serve::run(*a),
        Command::Leaks(a) => leaks::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Check(a) => check::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Stats(a) => stats::run(a),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("analyzer: {e:#}");
            ExitCode::from(2)
        }
    }
}
