//! Arguments several commands share, declared once.

use std::time::Duration;

use heaptide_analyzer::config::DEFAULT_STORE;
use heaptide_analyzer::select::{now_ms, window, Selector};
use heaptide_analyzer::store::{Location, Store};

/// The store a command reads or writes.
#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    /// `serve`'s `store` setting, for the commands that only read: the
    /// declaration's help, flag and variable (a test holds them equal).
    #[arg(long, env = "HEAPTIDE_STORE", help = store_help())]
    pub store: Option<String>,
}

fn store_help() -> String {
    let table = heaptide_analyzer::config::table();
    let store = table.iter().find(|s| s.key == "store");
    store.map_or_else(String::new, |s| {
        format!("{} [default: {DEFAULT_STORE}]", s.help)
    })
}

impl StoreArgs {
    pub fn location(&self) -> anyhow::Result<Location> {
        let text = self.store.as_deref().unwrap_or(DEFAULT_STORE);
        Ok(Location::parse(text, |k| std::env::var(k).ok())?)
    }

    /// Opens a store that must already exist, read-only, as read commands do.
    pub fn open_read_only(&self) -> anyhow::Result<Box<dyn Store>> {
        Ok(heaptide_analyzer::store::open_read_only(&self.location()?)?)
    }
}

/// How `leaks` and `predict` print.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// What `leaks` and `predict` look at.
#[derive(clap::Args)]
pub struct FindingsArgs {
    /// How far back to look.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub since: Duration,
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long)]
    pub instance: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Judge now, rather than read what a running `serve` kept for the
    /// last day.
    #[arg(long)]
    pub fresh: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

impl FindingsArgs {
    pub fn selector(&self) -> anyhow::Result<Selector> {
        let (from_ms, to_ms) = window(Some(self.since), None, None, self.since, now_ms())?;
        Ok(Selector {
            service: self.service.clone(),
            instance: self.instance.clone(),
            from_ms,
            to_ms,
        })
    }

    /// Runs the engine. A store with no data yet (or none for the service)
    /// is not an error, so that a cron job's JSON stays parseable: it gives
    /// no findings, and a note on stderr names what was asked for.
    pub fn analyze(&self) -> anyhow::Result<heaptide_analyzer::detect::Analysis> {
        let store = self.store.open_read_only()?;
        let kept_window = !self.fresh && self.since == Duration::from_secs(86_400);
        let analysis = heaptide_analyzer::continuous::analysis(
            &*store,
            &self.selector()?,
            kept_window,
            now_ms(),
        )?;
        if analysis.findings.is_empty() {
            let what = self
                .service
                .as_ref()
                .map(|s| format!("service {s:?}"))
                .unwrap_or_else(|| "any service".into());
            eprintln!(
                "analyzer: no data for {what} in {} yet (is an agent sending to it?)",
                self.store.location()?
            );
        }
        Ok(analysis)
    }
}
