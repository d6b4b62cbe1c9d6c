//! `analyzer serve` settings: flags (and the `HEAPTIDE_*` variables, which
//! the command line reads at the flag) beat the TOML file given with
//! `--config`, which beats the defaults. Each setting is declared once, in
//! [`settings`]; this module reads the file and turns the merged layers
//! into a checked [`ServeConfig`].

mod settings;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use settings::*;

use crate::continuous::alerts::notify::Webhook;
use crate::continuous::alerts::{AlertRules, WebhookConfig, WebhookKind};
use crate::error::{Error, Result};
use crate::server::{RateLimit, ServerOptions};
use crate::store::{Bounds, Durability, Location, Shard};

/// The largest config file read: far more than any real one, and a bound
/// on what a wrong path (a log, a device) could make the parser hold.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl Settings {
    /// The TOML file's settings. Unknown keys are errors.
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
pub(crate) fn read_bounded(path: &Path, max: u64) -> std::result::Result<String, String> {
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

impl ServeConfig {
    /// `https` when `serve` terminates TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        self.server.connections.scheme()
    }

    /// Merges flags, file and defaults, and checks the result. Tokens may
    /// also come from `HEAPTIDE_TOKEN` and `HEAPTIDE_READ_TOKEN` in `env`.
    pub fn resolve(
        flags: Settings,
        env: impl Fn(&str) -> Option<String>,
        file: Option<Settings>,
    ) -> Result<Self> {
        let mut merged = flags
            .over(file.unwrap_or_default())
            .over(Settings::defaults());
        merged.check()?;
        let listen_text = value(merged.listen.take(), "listen")?;
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            Error::invalid(
                "listen",
                format!("{listen_text:?} is not an address like {DEFAULT_LISTEN}"),
            )
        })?;
        let server = server_options(&merged, &env)?;
        if server.tokens.is_empty() && !listen.ip().is_loopback() {
            return Err(Error::invalid(
                "listen",
                format!("refusing to listen on non-loopback address {listen} without a token: anyone could write to the store; pass --token-file"),
            ));
        }
        let alerts = merged.alerts.take().unwrap_or_default();
        let mut server = server;
        // Browsers reach the pages at the external URL: over https, the
        // session cookie must never travel in the clear.
        server.secure_cookies = server.connections.tls.is_some()
            || alerts
                .external_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"));
        let webhooks = alert_webhooks(&alerts, std::mem::take(&mut merged.alert_webhook))?;
        let scrape = merged
            .scrape
            .iter()
            .map(|t| crate::ingest::foreign::ScrapeTarget::parse(t))
            .collect::<Result<Vec<_>>>()?;
        let store = Location::parse(&value(merged.store.take(), "store")?, &env)?;
        let shard: Shard = value(merged.shard.take(), "shard")?.parse()?;
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
            scrape_every: value(merged.scrape_interval, "scrape_interval")?.0,
            evaluate_every: value(merged.evaluate_every, "evaluate_every")?.0,
            listen,
            retention: value(merged.retention, "retention")?.0,
            server,
            durability: value(merged.durability, "durability")?,
            bounds: Bounds {
                max_instances_per_service: value(
                    merged.max_instances_per_service,
                    "max_instances_per_service",
                )?,
                max_services: value(merged.max_services, "max_services")?,
            },
        })
    }
}

/// A defaulted setting's value, which [`Settings::defaults`] always fills.
fn value<T>(v: Option<T>, key: &str) -> Result<T> {
    v.ok_or_else(|| Error::invalid(key, "has no value"))
}

/// Tokens, the rate limit and load shedding, checked.
fn server_options(m: &Settings, env: &impl Fn(&str) -> Option<String>) -> Result<ServerOptions> {
    let token_source = crate::server::tokens::TokenSource {
        token_file: m.token_file.clone(),
        read_token_file: m.read_token_file.clone(),
        admin_token_file: m.admin_token_file.clone(),
        tokens_file: m.tokens_file.clone(),
        env_token: env("HEAPTIDE_TOKEN").filter(|t| !t.is_empty()),
        env_read_token: env("HEAPTIDE_READ_TOKEN").filter(|t| !t.is_empty()),
    };
    let session_key = match &m.session_key_file {
        Some(path) => Some(std::sync::Arc::new(
            crate::server::session::SessionKey::from_file(path)?,
        )),
        None => crate::server::session::SessionKey::random()
            .ok()
            .map(std::sync::Arc::new),
    };
    let rate_limit = value(m.rate_limit, "rate_limit")?;
    Ok(ServerOptions {
        tokens: token_source.load()?,
        token_source,
        session_key,
        rate: RateLimit {
            per_second: rate_limit,
            burst: (rate_limit * 4.0).max(4.0),
        },
        names: crate::ingest::names::NameCaps {
            total: value(m.max_metric_names, "max_metric_names")?,
            per_instance: value(
                m.max_metric_names_per_instance,
                "max_metric_names_per_instance",
            )?,
        },
        max_concurrent_requests: value(m.max_concurrent_requests, "max_concurrent_requests")?,
        request_timeout: value(m.request_timeout, "request_timeout")?.0,
        connections: crate::server::conn::ConnectionLimits {
            max_total: value(m.max_connections, "max_connections")?,
            max_per_address: value(m.max_connections_per_address, "max_connections_per_address")?,
            max_requests_per_address: value(
                m.max_requests_per_address,
                "max_requests_per_address",
            )?,
            request_rate_per_address: value(
                m.request_rate_per_address,
                "request_rate_per_address",
            )?,
            header_read_timeout: value(m.header_read_timeout, "header_read_timeout")?.0,
            write_timeout: value(m.write_timeout, "write_timeout")?.0,
            tls: tls(m)?,
        },
        symbols: crate::server::SymbolOptions {
            dirs: m.debug_dir.iter().map(std::path::PathBuf::from).collect(),
            debuginfod: m.debuginfod.clone(),
            cache: m.symbol_cache.clone(),
        },
        ..ServerOptions::default()
    })
}

/// TLS from `tls_cert` and `tls_key`, which come together or not at all.
fn tls(m: &Settings) -> Result<Option<crate::server::tls::Tls>> {
    match (&m.tls_cert, &m.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(crate::server::tls::Tls::load(cert, key)?)),
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::invalid("tls-cert", "needs --tls-key too")),
        (None, Some(_)) => Err(Error::invalid("tls-key", "needs --tls-cert too")),
    }
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
        let file: Settings =
            toml::from_str("listen = \"127.0.0.1:1\"\nretention = \"2d\"\nstore = \"f.db\"")
                .unwrap();
        let flags = Settings {
            listen: Some("127.0.0.1:3".into()),
            ..Default::default()
        };
        let c = ServeConfig::resolve(flags, env(&[]), Some(file)).unwrap();
        assert_eq!(c.listen.port(), 3);
        assert_eq!(c.store, Location::Sqlite(std::path::PathBuf::from("f.db")));
        assert_eq!(c.retention, Duration::from_secs(2 * 86400));
    }

    #[test]
    fn unknown_file_keys_and_open_listeners_are_refused() {
        assert!(toml::from_str::<Settings>("listne = \"x\"").is_err());
        let flags = Settings {
            listen: Some("0.0.0.0:4040".into()),
            ..Default::default()
        };
        let e = ServeConfig::resolve(flags, env(&[]), None).unwrap_err();
        assert!(e.to_string().contains("without a token"), "{e}");
        let flags = Settings {
            retention: Some(crate::select::Span(Duration::from_secs(60))),
            ..Default::default()
        };
        let e = ServeConfig::resolve(flags, env(&[]), None).unwrap_err();
        assert!(e.to_string().starts_with("retention:"), "{e}");
        let e = toml::from_str::<Settings>("retention = \"forever\"").unwrap_err();
        assert!(e.to_string().contains("forever"), "{e}");
    }
}
