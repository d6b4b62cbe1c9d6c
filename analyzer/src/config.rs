//! `analyzer serve` settings: flags (and the `HEAPTIDE_*` variables, which
//! the command line reads at the flag) beat the TOML file given with
//! `--config`, which beats the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::continuous::alerts::notify::Webhook;
use crate::continuous::alerts::{AlertRules, WebhookConfig, WebhookKind};
use crate::error::{Error, Result};
use crate::select::Span;
use crate::server::{RateLimit, ServerOptions};
use crate::store::{Bounds, Durability, Location, Shard};

/// The TOML file's contents. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    /// A SQLite file, or `clickhouse://[USER[:PASSWORD]@]HOST:PORT/DB`.
    pub store: Option<String>,
    /// `INDEX/COUNT`: which services this analyzer evaluates and alerts
    /// on, when several share a ClickHouse store.
    pub shard: Option<String>,
    pub retention: Option<Span>,
    pub token_file: Option<PathBuf>,
    pub read_token_file: Option<PathBuf>,
    /// Batches per second allowed per agent (token and address).
    pub rate_limit: Option<f64>,
    /// How often every instance is judged.
    pub evaluate_every: Option<Span>,
    pub durability: Option<Durability>,
    pub max_instances_per_service: Option<u64>,
    pub max_services: Option<u64>,
    pub max_concurrent_requests: Option<usize>,
    pub request_timeout: Option<Span>,
    /// pprof endpoints to pull, `NAME=URL` each.
    #[serde(default)]
    pub scrape: Vec<String>,
    pub scrape_interval: Option<Span>,
    /// Alert rules and webhooks (`docs/alerts.md`).
    pub alerts: Option<AlertRules>,
}

/// The largest config file read: far more than any real one, and a bound
/// on what a wrong path (a log, a device) could make the parser hold.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let err = |reason: String| Error::Config {
            path: path.display().to_string(),
            reason,
        };
        let text = read_bounded(path, MAX_CONFIG_BYTES).map_err(err)?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }
}

/// A small text file, refused past `max` bytes rather than read whole.
pub fn read_bounded(path: &Path, max: u64) -> std::result::Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(text)
}

/// One layer of settings: the command line's, or the file's.
#[derive(Debug, Default, Clone)]
pub struct Layer {
    pub listen: Option<String>,
    pub store: Option<String>,
    pub shard: Option<String>,
    pub retention: Option<Duration>,
    pub token_file: Option<PathBuf>,
    pub read_token_file: Option<PathBuf>,
    pub rate_limit: Option<f64>,
    pub evaluate_every: Option<Duration>,
    pub durability: Option<Durability>,
    pub max_instances_per_service: Option<u64>,
    pub max_services: Option<u64>,
    pub max_concurrent_requests: Option<usize>,
    pub request_timeout: Option<Duration>,
    /// Webhooks of the Alertmanager kind, added to the file's.
    pub alert_webhooks: Vec<String>,
    /// pprof endpoints to pull, `NAME=URL`, added to the file's.
    pub scrape: Vec<String>,
    pub scrape_interval: Option<Duration>,
}

impl Layer {
    fn or(self, other: Layer) -> Layer {
        Layer {
            listen: self.listen.or(other.listen),
            store: self.store.or(other.store),
            shard: self.shard.or(other.shard),
            retention: self.retention.or(other.retention),
            token_file: self.token_file.or(other.token_file),
            read_token_file: self.read_token_file.or(other.read_token_file),
            rate_limit: self.rate_limit.or(other.rate_limit),
            evaluate_every: self.evaluate_every.or(other.evaluate_every),
            durability: self.durability.or(other.durability),
            max_instances_per_service: self
                .max_instances_per_service
                .or(other.max_instances_per_service),
            max_services: self.max_services.or(other.max_services),
            max_concurrent_requests: self
                .max_concurrent_requests
                .or(other.max_concurrent_requests),
            request_timeout: self.request_timeout.or(other.request_timeout),
            alert_webhooks: [self.alert_webhooks, other.alert_webhooks].concat(),
            scrape: [self.scrape, other.scrape].concat(),
            scrape_interval: self.scrape_interval.or(other.scrape_interval),
        }
    }
}

impl From<FileConfig> for Layer {
    fn from(f: FileConfig) -> Self {
        Layer {
            listen: f.listen,
            store: f.store,
            shard: f.shard,
            retention: f.retention.map(|r| r.0),
            token_file: f.token_file,
            read_token_file: f.read_token_file,
            rate_limit: f.rate_limit,
            evaluate_every: f.evaluate_every.map(|e| e.0),
            durability: f.durability,
            max_instances_per_service: f.max_instances_per_service,
            max_services: f.max_services,
            max_concurrent_requests: f.max_concurrent_requests,
            request_timeout: f.request_timeout.map(|t| t.0),
            alert_webhooks: Vec::new(),
            scrape: f.scrape,
            scrape_interval: f.scrape_interval.map(|s| s.0),
        }
    }
}

/// Resolved settings of `analyzer serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub store: Location,
    /// The services this analyzer evaluates and alerts on.
    pub shard: Shard,
    pub retention: Duration,
    /// Tokens, ingest limits and load shedding.
    pub server: ServerOptions,
    pub durability: Durability,
    pub bounds: Bounds,
    /// How often every instance is judged and its findings kept.
    pub evaluate_every: Duration,
    pub alerts: AlertRules,
    /// Every webhook, the file's and the flags', checked and ready.
    pub webhooks: Vec<Webhook>,
    /// pprof endpoints pulled every `scrape_every`.
    pub scrape: Vec<crate::ingest::foreign::ScrapeTarget>,
    pub scrape_every: Duration,
}

/// The store used when none is named.
pub const DEFAULT_STORE: &str = "heaptide.db";

impl ServeConfig {
    /// Merges flags and file, and checks the result. Tokens may also come
    /// from `HEAPTIDE_TOKEN` and `HEAPTIDE_READ_TOKEN` in `env`.
    pub fn resolve(
        flags: Layer,
        env: impl Fn(&str) -> Option<String>,
        mut file: Option<FileConfig>,
    ) -> Result<Self> {
        let alerts = file
            .as_mut()
            .and_then(|f| f.alerts.take())
            .unwrap_or_default();
        let merged = flags.or(file.map(Layer::from).unwrap_or_default());
        let listen_text = merged
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:4040".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            Error::invalid(
                "listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:4040"),
            )
        })?;
        let retention = merged.retention.unwrap_or(Duration::from_secs(7 * 86_400));
        if retention < Duration::from_secs(3600) {
            return Err(Error::invalid("retention", "must be at least 1h"));
        }
        let server = server_options(&merged, &env)?;
        if server.token.is_none() && !listen.ip().is_loopback() {
            return Err(Error::invalid(
                "listen",
                format!("refusing to listen on non-loopback address {listen} without a token: anyone could write to the store; pass --token-file"),
            ));
        }
        let evaluate_every = merged.evaluate_every.unwrap_or(Duration::from_secs(60));
        if evaluate_every < Duration::from_secs(1) {
            return Err(Error::invalid("evaluate_every", "must be at least 1s"));
        }
        let defaults = Bounds::default();
        let bounds = Bounds {
            max_instances_per_service: merged
                .max_instances_per_service
                .unwrap_or(defaults.max_instances_per_service),
            max_services: merged.max_services.unwrap_or(defaults.max_services),
        };
        let webhooks = alert_webhooks(&alerts, merged.alert_webhooks)?;
        let scrape = merged
            .scrape
            .iter()
            .map(|t| crate::ingest::foreign::ScrapeTarget::parse(t))
            .collect::<Result<Vec<_>>>()?;
        let scrape_every = merged.scrape_interval.unwrap_or(Duration::from_secs(60));
        if scrape_every < Duration::from_secs(1) {
            return Err(Error::invalid("scrape_interval", "must be at least 1s"));
        }
        let store = Location::parse(merged.store.as_deref().unwrap_or(DEFAULT_STORE), &env)?;
        let shard: Shard = merged
            .shard
            .as_deref()
            .map(str::parse)
            .transpose()?
            .unwrap_or_default();
        if shard.count > 1 && matches!(store, Location::Sqlite(_)) {
            return Err(Error::invalid(
                "shard",
                "sharding splits work between analyzers that share a store: use a clickhouse:// store",
            ));
        }
        Ok(ServeConfig {
            store,
            shard,
            alerts,
            webhooks,
            scrape,
            scrape_every,
            evaluate_every,
            listen,
            retention,
            server,
            durability: merged.durability.unwrap_or_default(),
            bounds,
        })
    }
}

/// Tokens, the rate limit and load shedding, checked.
fn server_options(m: &Layer, env: &impl Fn(&str) -> Option<String>) -> Result<ServerOptions> {
    let token = match &m.token_file {
        Some(path) => Some(read_token("token-file", path)?),
        None => env("HEAPTIDE_TOKEN").filter(|t| !t.is_empty()),
    };
    let read_token = match &m.read_token_file {
        Some(path) => Some(read_token("read-token-file", path)?),
        None => env("HEAPTIDE_READ_TOKEN").filter(|t| !t.is_empty()),
    };
    if read_token.is_some() && token.is_none() {
        return Err(Error::invalid(
            "read-token-file",
            "a read token needs a token for ingest too (--token-file)",
        ));
    }
    let rate_limit = m.rate_limit.unwrap_or(5.0);
    if !(rate_limit.is_finite() && (0.001..=1_000_000.0).contains(&rate_limit)) {
        return Err(Error::invalid(
            "rate_limit",
            "must be a number of batches per second between 0.001 and 1000000",
        ));
    }
    let defaults = ServerOptions::default();
    let max_concurrent_requests = m
        .max_concurrent_requests
        .unwrap_or(defaults.max_concurrent_requests);
    if !(1..=100_000).contains(&max_concurrent_requests) {
        return Err(Error::invalid(
            "max_concurrent_requests",
            "must be between 1 and 100000",
        ));
    }
    let request_timeout = m.request_timeout.unwrap_or(defaults.request_timeout);
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&request_timeout) {
        return Err(Error::invalid(
            "request_timeout",
            "must be between 1s and 1h",
        ));
    }
    Ok(ServerOptions {
        token,
        read_token,
        rate: RateLimit {
            per_second: rate_limit,
            burst: (rate_limit * 4.0).max(4.0),
        },
        max_concurrent_requests,
        request_timeout,
        ..defaults
    })
}

fn read_token(flag: &str, path: &Path) -> Result<String> {
    let t = read_bounded(path, 4096)
        .map_err(|e| Error::invalid(flag, format!("{}: {e}", path.display())))?;
    let t = t.trim().to_owned();
    if t.is_empty() {
        return Err(Error::invalid(flag, format!("{} is empty", path.display())));
    }
    if t.len() < 16 {
        // Guessable by brute force over the sign-in form; allowed, as a
        // test's token is, but said.
        tracing::warn!(
            "{flag}: the token in {} is shorter than 16 characters; use 32 random characters or more",
            path.display()
        );
    }
    Ok(t)
}

/// The file's webhooks and the flags' (of the Alertmanager kind),
/// checked, with their tokens read.
fn alert_webhooks(alerts: &AlertRules, flags: Vec<String>) -> Result<Vec<Webhook>> {
    let from_flags = flags.into_iter().map(|url| WebhookConfig {
        url,
        token_file: None,
        kind: WebhookKind::Alertmanager,
    });
    alerts
        .webhook
        .iter()
        .cloned()
        .chain(from_flags)
        .map(|c| Webhook::from_config(&c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(a, _)| *a == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_beat_file_beats_defaults() {
        let file: FileConfig =
            toml::from_str("listen = \"127.0.0.1:1\"\nretention = \"2d\"\nstore = \"f.db\"")
                .unwrap();
        let flags = Layer {
            listen: Some("127.0.0.1:3".into()),
            ..Default::default()
        };
        let c = ServeConfig::resolve(flags, env(&[]), Some(file)).unwrap();
        assert_eq!(c.listen.port(), 3);
        assert_eq!(c.store, Location::Sqlite(PathBuf::from("f.db")));
        assert_eq!(c.retention, Duration::from_secs(2 * 86400));
    }

    #[test]
    fn unknown_file_keys_and_open_listeners_are_refused() {
        assert!(toml::from_str::<FileConfig>("listne = \"x\"").is_err());
        let flags = Layer {
            listen: Some("0.0.0.0:4040".into()),
            ..Default::default()
        };
        let e = ServeConfig::resolve(flags, env(&[]), None).unwrap_err();
        assert!(e.to_string().contains("without a token"), "{e}");
        let flags = Layer {
            retention: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let e = ServeConfig::resolve(flags, env(&[]), None).unwrap_err();
        assert!(e.to_string().starts_with("retention:"), "{e}");
        let e = toml::from_str::<FileConfig>("retention = \"forever\"").unwrap_err();
        assert!(e.to_string().contains("forever"), "{e}");
    }
}
