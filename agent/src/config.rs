//! Agent settings: built in code, filled from `HEAPTIDE_*` variables.
//!
//! Precedence follows OpenTelemetry's SDKs: a value set on the [`Builder`]
//! wins over the environment, which wins over the default.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, Result};

/// Fully resolved settings of a running agent. Only [`Builder::build`]
/// makes one, and [`crate::Agent::start`] checks it again, so a running
/// agent's settings are always within [`Config::check`]'s bounds.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    pub endpoint: String,
    pub service: String,
    pub instance: String,
    pub token: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// How often resources are sampled.
    pub interval: Duration,
    /// How often a heap profile is taken.
    pub profile_interval: Duration,
    /// Mean bytes between heap samples; rounded to a power of two.
    pub heap_sample_period: u64,
    /// How long the pause meter sleeps between checks.
    pub pause_tick: Duration,
    /// Pauses at least this long are recorded as events.
    pub pause_threshold: Duration,
    /// Bound on queued, unsent data.
    pub queue_bytes: usize,
    /// Whether heap profiles carry inlined frames and `file:line` from
    /// DWARF as well as names.
    pub symbol_lines: bool,
    /// Which unwinder records sampled allocations' stacks.
    pub unwinder: crate::Unwinder,
    /// Timeout of one upload.
    pub send_timeout: Duration,
    /// How long `shutdown` may spend flushing.
    pub shutdown_timeout: Duration,
}

/// Builds a [`Config`] and starts the agent.
///
/// ```no_run
/// let agent = heaptide_agent::builder()
///     .service("checkout")
///     .interval(std::time::Duration::from_secs(5))
///     .start()
///     .expect("heaptide agent");
/// # drop(agent);
/// ```
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct Builder {
    endpoint: Option<String>,
    service: Option<String>,
    instance: Option<String>,
    token: Option<String>,
    labels: BTreeMap<String, String>,
    interval: Option<Duration>,
    profile_interval: Option<Duration>,
    heap_sample_period: Option<u64>,
    pause_tick: Option<Duration>,
    pause_threshold: Option<Duration>,
    queue_bytes: Option<usize>,
    symbol_lines: Option<bool>,
    unwinder: Option<crate::Unwinder>,
    send_timeout: Option<Duration>,
    shutdown_timeout: Option<Duration>,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: impl Into<$ty>) -> Self {
            self.$name = Some(value.into());
            self
        }
    };
}

impl Builder {
    setter!(/// Base URL of the analyzer, e.g. `http://127.0.0.1:4040`.
        endpoint: String);
    setter!(/// The service name; defaults to the executable's name.
        service: String);
    setter!(/// The instance name; defaults to `hostname-pid`.
        instance: String);
    setter!(/// Bearer token sent with every upload.
        token: String);
    setter!(/// Resource sampling interval (default 10 s).
        interval: Duration);
    setter!(/// Heap profile interval (default 60 s).
        profile_interval: Duration);
    setter!(/// Mean bytes between heap samples (default 512 KiB).
        heap_sample_period: u64);
    setter!(/// Pause-meter tick (default 5 ms).
        pause_tick: Duration);
    setter!(/// Shortest pause recorded as an event (default 10 ms).
        pause_threshold: Duration);
    setter!(/// Bound on queued, unsent data (default 4 MiB).
        queue_bytes: usize);
    setter!(/// Add inlined frames and `file:line` to profile frames, from the
        /// binary's DWARF (default on).
        symbol_lines: bool);
    setter!(/// Unwinder of sampled allocations (default `Auto`: frame pointers
        /// when the binary keeps them, else libgcc).
        unwinder: crate::Unwinder);
    setter!(/// Timeout of one upload (default 5 s).
        send_timeout: Duration);
    setter!(/// Time `shutdown` may spend flushing (default 2 s).
        shutdown_timeout: Duration);

    /// Adds a label, sent with every batch.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Resolves the settings against the process environment.
    pub fn build(self) -> Result<Config> {
        self.build_with(|key| std::env::var(key).ok())
    }

    /// Resolves the settings against `env`, for tests.
    pub fn build_with(self, env: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let env: &dyn Fn(&str) -> Option<String> = &env;
        let endpoint = endpoint(self.endpoint, env)?;
        let service = self
            .service
            .or_else(|| env("HEAPTIDE_SERVICE"))
            .unwrap_or_else(default_service);
        check_name("HEAPTIDE_SERVICE", &service)?;
        let instance = self
            .instance
            .or_else(|| env("HEAPTIDE_INSTANCE"))
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
        check_name("HEAPTIDE_INSTANCE", &instance)?;
        let token = token(self.token, env)?;
        let heap_sample_period = bytes(
            env,
            "HEAPTIDE_HEAP_SAMPLE_PERIOD",
            self.heap_sample_period,
            512 * 1024,
            "expected bytes such as 524288, 512KiB or 1MiB",
        )?;
        let queue_bytes = bytes(
            env,
            "HEAPTIDE_QUEUE_BYTES",
            self.queue_bytes.map(|q| q as u64),
            4 << 20,
            "expected bytes such as 4MiB",
        )? as usize;
        let config = Config {
            endpoint,
            symbol_lines: flag(env, "HEAPTIDE_SYMBOL_LINES", self.symbol_lines, true)?,
            unwinder: unwinder(env, self.unwinder)?,
            service,
            instance,
            token,
            labels: labels(env, self.labels)?,
            interval: duration(env, "HEAPTIDE_INTERVAL", self.interval, secs(10))?,
            profile_interval: duration(
                env,
                "HEAPTIDE_PROFILE_INTERVAL",
                self.profile_interval,
                secs(60),
            )?,
            heap_sample_period,
            pause_tick: duration(env, "HEAPTIDE_PAUSE_TICK", self.pause_tick, millis(5))?,
            pause_threshold: duration(
                env,
                "HEAPTIDE_PAUSE_THRESHOLD",
                self.pause_threshold,
                millis(10),
            )?,
            queue_bytes,
            send_timeout: duration(env, "send_timeout", self.send_timeout, secs(5))?,
            shutdown_timeout: duration(env, "shutdown_timeout", self.shutdown_timeout, secs(2))?,
        };
        config.check()?;
        Ok(config)
    }

    /// Starts the agent with these settings.
    pub fn start(self) -> Result<crate::Agent> {
        crate::Agent::start(self.build()?)
    }
}

/// The analyzer's URL, without a trailing slash; plain http only.
fn endpoint(set: Option<String>, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let endpoint = set
        .or_else(|| env("HEAPTIDE_ENDPOINT"))
        .unwrap_or_else(|| "http://127.0.0.1:4040".into());
    let endpoint = endpoint.trim().trim_end_matches('/').to_owned();
    if !endpoint.starts_with("http://") {
        return Err(invalid(
            "HEAPTIDE_ENDPOINT",
            endpoint,
            "must be an http:// URL (terminate TLS in a local proxy)",
        ));
    }
    Ok(endpoint)
}

/// The bearer token, if any: no spaces or control characters.
fn token(set: Option<String>, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>> {
    let token = set
        .or_else(|| env("HEAPTIDE_TOKEN"))
        .filter(|t| !t.is_empty());
    if token
        .as_ref()
        .is_some_and(|t| t.chars().any(|c| c.is_control() || c == ' '))
    {
        return Err(invalid(
            "HEAPTIDE_TOKEN",
            "<redacted>".into(),
            "must not contain spaces or control characters",
        ));
    }
    Ok(token)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn invalid(key: &'static str, value: String, reason: &str) -> Error {
    Error::InvalidConfig {
        key,
        value,
        reason: reason.into(),
    }
}

/// The builder's labels, then those of `HEAPTIDE_LABELS`
/// (`version=1.4.2,region=eu`), which the builder's win over.
fn labels(
    env: &dyn Fn(&str) -> Option<String>,
    set: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    const KEY: &str = "HEAPTIDE_LABELS";
    let mut out = BTreeMap::new();
    if let Some(text) = env(KEY) {
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| {
                    invalid(
                        KEY,
                        text.clone(),
                        "expected key=value pairs separated by commas",
                    )
                })?;
            out.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    out.extend(set);
    Ok(out)
}

/// A duration: as set in the builder, else from `key`, else `default`;
/// never zero.
fn duration(
    env: &dyn Fn(&str) -> Option<String>,
    key: &'static str,
    set: Option<Duration>,
    default: Duration,
) -> Result<Duration> {
    let value = match (set, env(key)) {
        (Some(d), _) => d,
        (None, Some(text)) => humantime::parse_duration(text.trim())
            .map_err(|e| invalid(key, text.clone(), &e.to_string()))?,
        (None, None) => default,
    };
    if value.is_zero() {
        return Err(invalid(
            key,
            format!("{value:?}"),
            "must be greater than zero",
        ));
    }
    Ok(value)
}

/// A size in bytes: as set, else from `key`, else `default`.
fn bytes(
    env: &dyn Fn(&str) -> Option<String>,
    key: &'static str,
    set: Option<u64>,
    default: u64,
    expected: &str,
) -> Result<u64> {
    match (set, env(key)) {
        (Some(b), _) => Ok(b),
        (None, Some(text)) => {
            parse_bytes(&text).ok_or_else(|| invalid(key, text.clone(), expected))
        }
        (None, None) => Ok(default),
    }
}

/// A switch: as set, else `true`/`1` or `false`/`0` from `key`, else
/// `default`.
fn flag(
    env: &dyn Fn(&str) -> Option<String>,
    key: &'static str,
    set: Option<bool>,
    default: bool,
) -> Result<bool> {
    if let Some(b) = set {
        return Ok(b);
    }
    match env(key).as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some("0") | Some("false") => Ok(false),
        Some("1") | Some("true") => Ok(true),
        Some(other) => Err(invalid(key, other.to_owned(), "expected true or false")),
    }
}

/// `HEAPTIDE_UNWINDER`: `auto`, `frame-pointers` or `libgcc`.
fn unwinder(
    env: &dyn Fn(&str) -> Option<String>,
    set: Option<crate::Unwinder>,
) -> Result<crate::Unwinder> {
    const KEY: &str = "HEAPTIDE_UNWINDER";
    match (set, env(KEY)) {
        (Some(u), _) => Ok(u),
        (None, None) => Ok(crate::Unwinder::Auto),
        (None, Some(v)) => crate::Unwinder::parse(v.trim())
            .ok_or_else(|| invalid(KEY, v, "expected auto, frame-pointers or libgcc")),
    }
}

pub(crate) fn check_name(key: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 200 || value.chars().any(char::is_control) {
        return Err(Error::InvalidConfig {
            key,
            value: value.to_owned(),
            reason: "must be 1 to 200 characters with no control characters".into(),
        });
    }
    Ok(())
}

/// Parses `524288`, `512KiB`, `512k`, `1MiB` or `1m`. Hand-written because
/// the only grammar needed is a number and a binary suffix.
fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn default_service() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_sane() {
        let c = Builder::default().build_with(env(&[])).unwrap();
        assert_eq!(c.endpoint, "http://127.0.0.1:4040");
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.profile_interval, Duration::from_secs(60));
        assert_eq!(c.heap_sample_period, 512 * 1024);
        assert!(c.instance.ends_with(&std::process::id().to_string()));
    }

    #[test]
    fn environment_fills_and_builder_wins() {
        let e = env(&[
            ("HEAPTIDE_INTERVAL", "250ms"),
            ("HEAPTIDE_SERVICE", "from-env"),
            ("HEAPTIDE_HEAP_SAMPLE_PERIOD", "64KiB"),
            ("HEAPTIDE_ENDPOINT", "http://10.0.0.1:4040/"),
        ]);
        let c = Builder::default()
            .service("from-code")
            .build_with(e)
            .unwrap();
        assert_eq!(c.interval, Duration::from_millis(250));
        assert_eq!(c.service, "from-code");
        assert_eq!(c.heap_sample_period, 64 * 1024);
        assert_eq!(c.endpoint, "http://10.0.0.1:4040");
    }

    #[test]
    fn bad_settings_name_the_key() {
        let c = Builder::default()
            .build_with(env(&[("HEAPTIDE_LABELS", "version=1, region = eu")]))
            .unwrap();
        assert_eq!(c.labels.get("region").map(String::as_str), Some("eu"));
        let e = Builder::default()
            .build_with(env(&[("HEAPTIDE_LABELS", "version")]))
            .unwrap_err();
        assert!(e.to_string().contains("HEAPTIDE_LABELS"), "{e}");
        let err = Builder::default()
            .build_with(env(&[("HEAPTIDE_INTERVAL", "often")]))
            .unwrap_err();
        assert!(err.to_string().contains("HEAPTIDE_INTERVAL"), "{err}");
        let err = Builder::default()
            .build_with(env(&[("HEAPTIDE_INTERVAL", "0s")]))
            .unwrap_err();
        assert!(err.to_string().contains("greater than zero"), "{err}");
        let err = Builder::default()
            .build_with(env(&[("HEAPTIDE_ENDPOINT", "ftp://x")]))
            .unwrap_err();
        assert!(err.to_string().contains("HEAPTIDE_ENDPOINT"), "{err}");
        let err = Builder::default()
            .build_with(env(&[("HEAPTIDE_HEAP_SAMPLE_PERIOD", "lots")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("HEAPTIDE_HEAP_SAMPLE_PERIOD"),
            "{err}"
        );
    }
}
