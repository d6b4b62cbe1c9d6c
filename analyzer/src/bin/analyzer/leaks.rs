//! `analyzer leaks`: the suspected leaks, worst first.

use std::process::ExitCode;

use heaptide_analyzer::detect::LeakVerdict;
use heaptide_analyzer::read::report;
use heaptide_ui::format::printable;

use crate::args::{FindingsArgs, Format};
use crate::out;

pub fn run(a: FindingsArgs) -> anyhow::Result<ExitCode> {
    let analysis = a.analyze()?;
    let insufficient: Vec<_> = analysis
        .findings
        .iter()
        .filter(|f| f.verdict == LeakVerdict::InsufficientData)
        .cloned()
        .collect();
    let leaks = analysis.leaks();
    match a.format {
        Format::Json => out::println(&serde_json::to_string_pretty(&leaks)?)?,
        Format::Table => out::print(&printable(report::leaks_table(&leaks, &insufficient)))?,
    }
    Ok(ExitCode::SUCCESS)
}
