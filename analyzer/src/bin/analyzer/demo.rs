//! `analyzer demo`: the quickstart.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// Exit once the leak is reported instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit_when_found: bool,
    /// Give up if nothing is found in this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
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
            exit_when_found: a.exit_when_found,
            timeout: a.timeout,
        },
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    ))?;
    Ok(ExitCode::SUCCESS)
}
