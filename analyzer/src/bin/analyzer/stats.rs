//! `analyzer stats`: the store's size and bytes per agent-day.

use std::process::ExitCode;

use crate::args::StoreArgs;

pub fn run(a: StoreArgs) -> anyhow::Result<ExitCode> {
    let store = a.open_read_only()?;
    crate::out::println(&serde_json::to_string_pretty(&store.stats()?)?)?;
    Ok(ExitCode::SUCCESS)
}
