//! Agent settings: built in code, filled from `HEAPTIDE_*` variables.
//!
//! Precedence follows OpenTelemetry's SDKs: a value set on the [`Builder`]
//! wins over the environment, which wins over the default. Every setting
//! is one row of the table below, with its variable, default, bounds and
//! help; [`declare`] makes the [`Config`], the [`Builder`] and its
//! setters, the checks and the README's table from it.

mod declare;
pub(crate) mod transport;
pub(crate) mod value;

use std::collections::BTreeMap;
use std::time::Duration;

#[cfg(test)]
use declare::default_text;
use declare::{agent_settings, default_doc, error_text, setter_type, shown};

use crate::error::{Error, Result};
use crate::{Symbolize, Unwinder};

/// The analyzer the agent sends to when none is named.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4040";
/// How often resources are sampled by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// How often a heap profile is taken by default.
pub const DEFAULT_PROFILE_INTERVAL: Duration = Duration::from_secs(60);
/// Mean bytes between heap samples by default: jemalloc's `lg_prof_sample:19`.
pub const DEFAULT_HEAP_SAMPLE_PERIOD: u64 = 512 << 10;
/// The pause meter's default tick.
pub const DEFAULT_PAUSE_TICK: Duration = Duration::from_millis(5);
/// The shortest pause recorded as an event by default.
pub const DEFAULT_PAUSE_THRESHOLD: Duration = Duration::from_millis(10);
/// The default bound on queued, unsent data.
pub const DEFAULT_QUEUE_BYTES: usize = 4 << 20;
/// The default timeout of one upload.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `shutdown` may spend flushing by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// The smallest queue: it must hold at least one typical heap profile
/// with room for the metric samples queued beside it. A profile of 2,000
/// stacks of 10 to 24 frames is 88 KB gzipped, 118 KB as sent in base64.
pub const MIN_QUEUE_BYTES: usize = 256 << 10;

agent_settings! {
    /// Base URL of the analyzer, e.g. `https://heaptide.example.com` or
    /// `http://127.0.0.1:4040`. A token is sent over plain http only to a
    /// loopback address, unless `HEAPTIDE_ALLOW_INSECURE` says otherwise.
    endpoint: String, env "HEAPTIDE_ENDPOINT", default DEFAULT_ENDPOINT,
        tidy |e: String| e.trim().trim_end_matches('/').to_owned(),
        check |e| if e.starts_with("http://") || e.starts_with("https://") {
            Ok(())
        } else {
            Err("must be an http:// or https:// URL".into())
        },
        example "https://10.0.0.1:4041";
    /// A PEM file of the certificates to trust for an https endpoint,
    /// instead of the platform's roots (a private CA).
    ca_file: Option<String>, env "HEAPTIDE_CA_FILE", default None, shown "the platform's roots",
        set String, check |f| match f {
            Some(path) => transport::roots_from(path).map(|_| ()),
            None => Ok(()),
        },
        // A real PEM file: the check reads it.
        example "tests/data/ca.pem";
    /// Send the token over plain http to an address that is not loopback:
    /// anyone on the path could read it.
    allow_insecure: bool, env "HEAPTIDE_ALLOW_INSECURE", default false, shown "`false`",
        example "true";
    /// The service name.
    service: String, env "HEAPTIDE_SERVICE", default default_service(),
        shown "the executable's name", check |s| name(s), example "checkout";
    /// The instance name; set a stable one (a pod name) so restarts are
    /// recognised as such.
    instance: String, env "HEAPTIDE_INSTANCE",
        default format!("{}-{}", hostname(), std::process::id()),
        shown "hostname-pid", check |s| name(s), example "web-1";
    /// Bearer token sent with every upload: an ingest token (the
    /// analyzer's `--token-file`, or one of its `--tokens-file` scoped to
    /// this service), which sends batches and reads nothing.
    token: Option<String>, env "HEAPTIDE_TOKEN", default None, shown "none", set String,
        check |t| match t {
            Some(t) if t.chars().any(|c| c.is_control() || c == ' ') => {
                Err("must not contain spaces or control characters".into())
            }
            _ => Ok(()),
        },
        example "0123456789abcdef", secret;
    /// Labels sent with every batch, `version=1.4.2,region=eu` (the
    /// builder's win key by key); the dashboards filter and compare by
    /// them, and a new `version` marks a deploy.
    labels: BTreeMap<String, String>, env "HEAPTIDE_LABELS", default BTreeMap::new(), shown "none",
        example "version=1.4.2,region=eu";
    /// Resource sampling interval.
    interval: Duration, env "HEAPTIDE_INTERVAL", default DEFAULT_INTERVAL,
        check |d| within(d, ms(10), s(3600)), example "5s";
    /// Heap profile interval.
    profile_interval: Duration, env "HEAPTIDE_PROFILE_INTERVAL",
        default DEFAULT_PROFILE_INTERVAL,
        check |d| within(d, ms(100), s(86_400)), example "30s";
    /// Mean bytes between heap samples (rounded to a power of two).
    heap_sample_period: u64, env "HEAPTIDE_HEAP_SAMPLE_PERIOD",
        default DEFAULT_HEAP_SAMPLE_PERIOD,
        check |b| if (1..=(1u64 << 40)).contains(b) {
            Ok(())
        } else {
            Err("must be between 1 byte and 1 TiB".into())
        },
        example "64KiB";
    /// Pause-meter tick.
    pause_tick: Duration, env "HEAPTIDE_PAUSE_TICK", default DEFAULT_PAUSE_TICK,
        check |d| within(d, ms(1), s(1)), example "2ms";
    /// Shortest pause recorded as an event.
    pause_threshold: Duration, env "HEAPTIDE_PAUSE_THRESHOLD",
        default DEFAULT_PAUSE_THRESHOLD,
        check |d| within(d, ms(1), s(3600)), example "20ms";
    /// Bound on unsent data; the oldest is dropped, and counted, beyond it.
    queue_bytes: usize, env "HEAPTIDE_QUEUE_BYTES", default DEFAULT_QUEUE_BYTES,
        check |b| if (MIN_QUEUE_BYTES..=(1 << 30)).contains(b) {
            Ok(())
        } else {
            Err("must be between 256 KiB (one heap profile) and 1 GiB".into())
        },
        example "8MiB";
    /// With `HEAPTIDE_SYMBOLIZE=agent`: add inlined frames and `file:line`
    /// from the binary's DWARF to profile frames (read one compilation unit
    /// at a time: a few MiB at peak, see `docs/benchmarks.md`); `false`
    /// keeps names from the symbol table only. The analyzer always adds
    /// them.
    symbol_lines: bool, env "HEAPTIDE_SYMBOL_LINES", default true, shown "`true`",
        example "false";
    /// Where profile addresses are named: `analyzer` (profiles carry
    /// addresses and build-ids only; the analyzer names them from debug
    /// files, which it asks one agent of a fleet to upload when it has
    /// none, and the agent reads no symbols) or `agent` (in this process,
    /// from its own binaries, for an analyzer that cannot take uploads).
    symbolize: Symbolize, env "HEAPTIDE_SYMBOLIZE", default Symbolize::Analyzer,
        example "agent";
    /// What records a sampled allocation's stack: `frame-pointers`,
    /// `libgcc`, or `auto` (frame pointers when the binary keeps them, else
    /// libgcc).
    unwinder: Unwinder, env "HEAPTIDE_UNWINDER", default Unwinder::Auto,
        example "libgcc";
    /// The share of the memory limit (cgroup, `RLIMIT_AS`, or physical
    /// memory) above which each new high of RSS or heap takes a heap
    /// profile at once, as do new cgroup memory events: the last profile
    /// before an OOM kill.
    pressure_share: f64, env "HEAPTIDE_PRESSURE_SHARE", default 0.8, shown "`0.8`",
        check |v| if (0.1..=1.0).contains(v) {
            Ok(())
        } else {
            Err("must be between 0.1 and 1 (10% and 100%)".into())
        },
        example "90%";
    /// Timeout of one upload.
    send_timeout: Duration, env "HEAPTIDE_SEND_TIMEOUT", default DEFAULT_SEND_TIMEOUT,
        check |d| within(d, ms(10), s(600)), example "1s";
    /// Time `shutdown` may spend flushing.
    shutdown_timeout: Duration, env "HEAPTIDE_SHUTDOWN_TIMEOUT",
        default DEFAULT_SHUTDOWN_TIMEOUT,
        check |d| within(d, ms(10), s(600)), example "1s";
}

impl Config {
    /// What no one setting can check alone: a token sent in the clear.
    fn check_together(&self) -> Result<()> {
        if self.token.is_some() && !self.allow_insecure && transport::token_in_clear(&self.endpoint)
        {
            return Err(invalid(
                "HEAPTIDE_ENDPOINT",
                self.endpoint.clone(),
                "would send the token over plain http beyond loopback; use https://, or set HEAPTIDE_ALLOW_INSECURE=true",
            ));
        }
        Ok(())
    }
}

impl Builder {
    /// Adds a label, sent with every batch.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    /// Resolves the settings against the process environment.
    ///
    /// # Errors
    ///
    /// As [`Builder::build_with`].
    pub fn build(self) -> Result<Config> {
        self.build_with(|key| std::env::var(key).ok())
    }

    /// Starts the agent with these settings.
    ///
    /// # Errors
    ///
    /// As [`Builder::build`], and as [`crate::Agent::start`].
    pub fn start(self) -> Result<crate::Agent> {
        crate::Agent::start(self.build()?)
    }
}

/// One row of the README's table.
#[cfg(test)]
#[derive(Debug)]
struct Row {
    env: &'static str,
    default: String,
    help: String,
    example: &'static str,
}

/// The builder's value over the variable's, the variable read with the
/// setting's own parser; `None` when neither is there.
fn resolve<T: value::Value>(
    set: Option<T>,
    env: &dyn Fn(&str) -> Option<String>,
    key: &'static str,
) -> Result<Option<T>> {
    let from_env = env(key)
        // An empty variable is an unset one, as shells and manifests
        // write "no value".
        .filter(|t| !t.trim().is_empty())
        .map(|text| T::parse_env(&text).map_err(|reason| invalid(key, text.clone(), &reason)))
        .transpose()?;
    Ok(T::layer(set, from_env))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn within(d: &Duration, min: Duration, max: Duration) -> std::result::Result<(), String> {
    if !(min..=max).contains(d) {
        return Err(format!("must be between {min:?} and {max:?}"));
    }
    Ok(())
}

fn name(value: &str) -> std::result::Result<(), String> {
    if value.is_empty() || value.len() > 200 || value.chars().any(char::is_control) {
        return Err("must be 1 to 200 characters with no control characters".into());
    }
    Ok(())
}

pub(crate) fn invalid(key: &'static str, value: String, reason: &str) -> Error {
    Error::InvalidConfig {
        key,
        value,
        reason: reason.into(),
    }
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

    #[test]
    fn every_setting_reaches_the_config_by_builder_and_by_variable() {
        let unset = format!("{:?}", Builder::default().build_with(|_| None).unwrap());
        for row in table() {
            let by_env = Builder::default()
                .build_with(|k| (k == row.env).then(|| row.example.to_owned()))
                .unwrap_or_else(|e| panic!("{}: {e}", row.env));
            let by_builder = Builder::default()
                .with_text(row.env, row.example)
                .build_with(|_| None)
                .unwrap();
            let (by_env, by_builder) = (format!("{by_env:?}"), format!("{by_builder:?}"));
            assert_eq!(by_env, by_builder, "{}", row.env);
            assert_ne!(
                by_env, unset,
                "{} = {} changed nothing",
                row.env, row.example
            );
        }
    }

    #[test]
    fn the_readme_shows_every_setting_as_declared() {
        let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
        for row in table() {
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                row.env,
                row.default,
                row.help.replace('|', "\\|")
            ));
        }
        let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        heaptide_testkit::golden::assert_doc_section(&readme, "agent settings", &out);
        let top =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        for row in table() {
            assert!(top.contains(row.env), "README.md does not name {}", row.env);
        }
    }

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
    fn a_token_is_not_sent_over_plain_http_beyond_loopback_unless_allowed() {
        let clear = [
            ("HEAPTIDE_ENDPOINT", "http://10.0.0.1:4040"),
            ("HEAPTIDE_TOKEN", "0123456789abcdef"),
        ];
        let err = Builder::default().build_with(env(&clear)).unwrap_err();
        assert!(err.to_string().contains("HEAPTIDE_ALLOW_INSECURE"), "{err}");
        let allowed = [clear[0], clear[1], ("HEAPTIDE_ALLOW_INSECURE", "true")];
        assert!(Builder::default().build_with(env(&allowed)).is_ok());
        for fine in ["http://127.0.0.1:4040", "https://10.0.0.1:4040"] {
            let c = [("HEAPTIDE_ENDPOINT", fine), clear[1]];
            assert!(Builder::default().build_with(env(&c)).is_ok(), "{fine}");
        }
        // No token, nothing to leak.
        assert!(Builder::default().build_with(env(&clear[..1])).is_ok());
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
