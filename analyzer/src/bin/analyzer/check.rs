//! `analyzer check`: the CI gate on growth budgets.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use heaptide_analyzer::check::budget::BudgetFile;
use heaptide_analyzer::check::{self, render, Baseline};
use heaptide_analyzer::select::{now_ms, window, Selector};

use crate::args::StoreArgs;
use crate::out;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
    Junit,
}

#[derive(clap::Args)]
pub struct Args {
    /// The budget file (TOML; see docs/budgets.md).
    #[arg(long)]
    pub budget: PathBuf,
    /// The run to judge: this long back from now.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub since: Duration,
    #[arg(long)]
    pub service: Option<String>,
    /// A result saved from the main branch with --save-baseline.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Save this run's rates as a baseline.
    #[arg(long)]
    pub save_baseline: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: CheckFormat,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn load_baseline(p: &PathBuf) -> anyhow::Result<Baseline> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("reading baseline {}", p.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("baseline {} is not a saved check result", p.display()))
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let budgets = BudgetFile::load(&a.budget)?;
    let baseline = a.baseline.as_ref().map(load_baseline).transpose()?;
    let store = a.store.open_read_only()?;
    let (from_ms, to_ms) = window(Some(a.since), None, None, a.since, now_ms())?;
    let sel = Selector {
        service: a.service.clone(),
        instance: None,
        from_ms,
        to_ms,
    };
    let result = check::check(&*store, &budgets, &sel, baseline.as_ref())?;
    match a.format {
        CheckFormat::Text => out::print(&heaptide_ui::format::printable(render::text(&result)))?,
        CheckFormat::Json => out::println(&serde_json::to_string_pretty(&result)?)?,
        CheckFormat::Junit => out::print(&render::junit(&result))?,
    }
    if let Some(p) = &a.save_baseline {
        let b = Baseline::from_result(&result);
        std::fs::write(p, serde_json::to_string_pretty(&b)?)
            .with_context(|| format!("writing baseline {}", p.display()))?;
    }
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&summary)
            .context("opening GITHUB_STEP_SUMMARY")?;
        f.write_all(heaptide_ui::format::printable(render::markdown(&result)).as_bytes())?;
    }
    Ok(if result.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
