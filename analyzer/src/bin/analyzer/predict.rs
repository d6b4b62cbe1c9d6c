//! `analyzer predict`: when each resource of each instance runs out.

use std::process::ExitCode;
use std::time::Duration;

use heaptide_analyzer::read::report;
use heaptide_analyzer::select::ms;
use heaptide_ui::format::printable;

use crate::args::{FindingsArgs, Format};
use crate::out;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub analysis: FindingsArgs,
    /// Only exhaustion within this long is predicted.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub horizon: Duration,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let analysis = a.analysis.analyze()?.within_horizon(ms(a.horizon));
    match a.analysis.format {
        Format::Json => out::println(&serde_json::to_string_pretty(&analysis)?)?,
        Format::Table => out::print(&printable(report::predict_table(
            &analysis,
            a.horizon.as_secs_f64(),
        )))?,
    }
    Ok(ExitCode::SUCCESS)
}
