//! Every setting of `analyzer serve`, declared once: its file key, flag,
//! environment variable, default, help and check stand together in the
//! [`settings!`] table below, and everything else is generated from it:
//! the clap arguments, the TOML file's keys (unknown keys are errors),
//! the merge of the layers, the checks, and the table that `docs/cli.md`
//! is tested against ([`table`]).
//!
//! A setting's key is its field's name: the flag is the key with dashes
//! (`--evaluate-every`), the file key is the key (`evaluate_every`), and
//! the variable is `HEAPTIDE_` and the key in capitals
//! (`HEAPTIDE_EVALUATE_EVERY`); a test holds every row to that.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::continuous::alerts::AlertRules;
use crate::error::{Error, Result};
use crate::select::Span;
use crate::store::Durability;

/// One row of the table, as the docs show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The file key, and the field of [`Settings`].
    pub key: &'static str,
    /// `--key-with-dashes`.
    pub flag: String,
    pub env: &'static str,
    /// The default, as it would be written; `None` for a setting that is
    /// off or empty unless set.
    pub default: Option<String>,
    pub help: String,
    /// A value that differs from the default and is valid on its own:
    /// what the test of every setting sets.
    pub example: &'static str,
}

/// `None`, or `Some` of the one expression given.
macro_rules! optional {
    () => {
        None
    };
    ($e:expr) => {
        Some($e)
    };
}

/// Declares every setting: see the module's docs.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $key:ident: $ty:ty, env $env:literal
            $(, default $dname:ident: $dty:ty = $dval:expr)?
            $(, check $check:expr)?
            , example $example:literal;
    )*) => {
        $( $(
            #[doc = concat!("The default of `", stringify!($key), "`.")]
            pub const $dname: $dty = $dval;
        )? )*

        /// One layer of `serve`'s settings: the command line's (with the
        /// `HEAPTIDE_*` variables, read at the flag), the file's, or the
        /// defaults'. Only [`Settings::defaults`] fills every defaulted
        /// field.
        #[derive(Debug, Default, Clone, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $(
                $(#[doc = $doc])*
                #[doc = ""]
                #[doc = concat!("Flag `--", stringify!($key), "` (with dashes), variable `", $env, "`.")]
                $( #[doc = concat!("Default: [`", stringify!($dname), "`].")] )?
                #[arg(long, env = $env, help = help_text(concat!($($doc, "\n"),*), optional!($($dname.to_string())?)))]
                #[serde(default)]
                pub $key: $ty,
            )*
            /// Alert rules and webhooks (`docs/alerts.md`): the file's only,
            /// a table rather than one value.
            #[arg(skip)]
            #[serde(default)]
            pub alerts: Option<AlertRules>,
        }

        impl Settings {
            /// Every defaulted setting at its default.
            pub fn defaults() -> Settings {
                Settings {
                    $( $( $key: Field::of($dname), )? )*
                    ..Settings::default()
                }
            }

            /// This layer over `lower`: a value set here wins; lists join,
            /// this layer's first.
            pub fn over(self, lower: Settings) -> Settings {
                Settings {
                    $( $key: Merge::merge(self.$key, lower.$key), )*
                    alerts: self.alerts.or(lower.alerts),
                }
            }

            /// Runs every setting's own check on the values it holds.
            pub fn check(&self) -> Result<()> {
                $( $(
                    for v in self.$key.iter() {
                        let check: fn(&_) -> std::result::Result<(), String> = $check;
                        check(v).map_err(|reason| Error::invalid(stringify!($key), reason))?;
                    }
                )? )*
                Ok(())
            }
        }

        /// Every setting, in the order of the declaration.
        pub fn table() -> Vec<Setting> {
            vec![$(
                Setting {
                    key: stringify!($key),
                    flag: format!("--{}", stringify!($key).replace('_', "-")),
                    env: $env,
                    default: optional!($($dname.to_string())?),
                    help: help_text(concat!($($doc, "\n"),*), None),
                    example: $example,
                },
            )*]
        }
    };
}

settings! {
    /// Address to listen on.
    listen: Option<String>, env "HEAPTIDE_LISTEN",
        default DEFAULT_LISTEN: &str = "127.0.0.1:4040",
        example "127.0.0.1:4041";
    /// A SQLite file, or clickhouse://[USER[:PASSWORD]@]HOST:PORT/DATABASE
    /// (the user and password may also come from HEAPTIDE_CLICKHOUSE_USER
    /// and HEAPTIDE_CLICKHOUSE_PASSWORD).
    store: Option<String>, env "HEAPTIDE_STORE",
        default DEFAULT_STORE: &str = "heaptide.db",
        example "clickhouse://127.0.0.1:9/other";
    /// INDEX/COUNT, like 0/2: the share of services this analyzer
    /// evaluates and alerts on, when several share a ClickHouse store.
    shard: Option<String>, env "HEAPTIDE_SHARD",
        default DEFAULT_SHARD: &str = "0/1",
        example "1/2";
    /// How long data is kept.
    retention: Option<Span>, env "HEAPTIDE_RETENTION",
        default DEFAULT_RETENTION: Span = Span(Duration::from_secs(7 * 86_400)),
        check |s| at_least(s, Duration::from_secs(3600)),
        example "2d";
    /// How often every instance is judged and its findings kept.
    evaluate_every: Option<Span>, env "HEAPTIDE_EVALUATE_EVERY",
        default DEFAULT_EVALUATE_EVERY: Span = Span(Duration::from_secs(60)),
        check |s| at_least(s, Duration::from_secs(1)),
        example "30s";
    /// File holding the ingest token agents send: it sends batches for
    /// every service and reads nothing. Without it, HEAPTIDE_TOKEN holds
    /// the token itself. Read again on SIGHUP.
    token_file: Option<PathBuf>, env "HEAPTIDE_TOKEN_FILE",
        example "token";
    /// File holding a token that grants only reading: the pages, the read
    /// API and /metrics. Without it, HEAPTIDE_READ_TOKEN holds the token.
    read_token_file: Option<PathBuf>, env "HEAPTIDE_READ_TOKEN_FILE",
        example "read-token";
    /// File holding a token that both reads and sends batches for every
    /// service.
    admin_token_file: Option<PathBuf>, env "HEAPTIDE_ADMIN_TOKEN_FILE",
        example "admin-token";
    /// A TOML file of named tokens ([[token]] with name, kind = ingest,
    /// read or admin, secret, and for ingest an optional services list).
    /// Read again on SIGHUP.
    tokens_file: Option<PathBuf>, env "HEAPTIDE_TOKENS_FILE",
        example "tokens.toml";
    /// File holding the key (32 bytes or more) that signs sign-in
    /// cookies; give every analyzer behind one balancer the same file.
    /// Without it, a random key: sessions end with the process.
    session_key_file: Option<PathBuf>, env "HEAPTIDE_SESSION_KEY_FILE",
        example "session-key";
    /// PEM file of the certificate chain: serve terminates TLS itself
    /// (https), with no proxy in front. Needs tls_key.
    tls_cert: Option<PathBuf>, env "HEAPTIDE_TLS_CERT",
        example "server.pem";
    /// PEM file of the private key of tls_cert.
    tls_key: Option<PathBuf>, env "HEAPTIDE_TLS_KEY",
        example "server.key";
    /// Batches per second allowed per agent, keyed on its token and
    /// address.
    rate_limit: Option<f64>, env "HEAPTIDE_RATE_LIMIT",
        default DEFAULT_RATE_LIMIT: f64 = 5.0,
        check |r: &f64| if r.is_finite() && (0.001..=1_000_000.0).contains(r) {
            Ok(())
        } else {
            Err("must be a number of batches per second between 0.001 and 1000000".into())
        },
        example "2.5";
    /// When a commit is on disk: normal (survives the analyzer being
    /// killed) or full (also an OS crash).
    durability: Option<Durability>, env "HEAPTIDE_DURABILITY",
        default DEFAULT_DURABILITY: Durability = Durability::Normal,
        example "full";
    /// Instances one service may have.
    max_instances_per_service: Option<u64>, env "HEAPTIDE_MAX_INSTANCES_PER_SERVICE",
        default DEFAULT_MAX_INSTANCES_PER_SERVICE: u64 = 10_000,
        example "20";
    /// Services the store may hold.
    max_services: Option<u64>, env "HEAPTIDE_MAX_SERVICES",
        default DEFAULT_MAX_SERVICES: u64 = 10_000,
        example "30";
    /// Distinct metric names the store may hold; a new name past it is
    /// dropped from its batch and counted, the rest stored.
    max_metric_names: Option<usize>, env "HEAPTIDE_MAX_METRIC_NAMES",
        default DEFAULT_MAX_METRIC_NAMES: usize = 20_000,
        check |n: &usize| within(n, 100, 10_000_000),
        example "5000";
    /// Distinct metric names one instance may send; past it, as above.
    max_metric_names_per_instance: Option<usize>, env "HEAPTIDE_MAX_METRIC_NAMES_PER_INSTANCE",
        default DEFAULT_MAX_METRIC_NAMES_PER_INSTANCE: usize = 2_000,
        check |n: &usize| within(n, 50, 1_000_000),
        example "500";
    /// Requests served at once; past it, 503 at once.
    max_concurrent_requests: Option<usize>, env "HEAPTIDE_MAX_CONCURRENT_REQUESTS",
        default DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512,
        check |n: &usize| within(n, 1, 100_000),
        example "64";
    /// The longest any request may take, body included (a debug file's
    /// upload a second more for each MiB it declares).
    request_timeout: Option<Span>, env "HEAPTIDE_REQUEST_TIMEOUT",
        default DEFAULT_REQUEST_TIMEOUT: Span = Span(Duration::from_secs(30)),
        check |s| within(s, Span(Duration::from_secs(1)), Span(Duration::from_secs(3600))),
        example "10s";
    /// Connections open at once, from all peers; past it a new
    /// connection is closed at once. Also held below the process's file
    /// descriptor limit.
    max_connections: Option<usize>, env "HEAPTIDE_MAX_CONNECTIONS",
        default DEFAULT_MAX_CONNECTIONS: usize = 16_384,
        check |n: &usize| within(n, 16, 1_000_000),
        example "4096";
    /// Connections open at once from one address. Behind a load balancer
    /// or a NAT that many agents share, raise it to max_connections.
    max_connections_per_address: Option<usize>, env "HEAPTIDE_MAX_CONNECTIONS_PER_ADDRESS",
        default DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 4_096,
        check |n: &usize| within(n, 1, 1_000_000),
        example "256";
    /// Requests in flight from one address, over all its connections;
    /// past it, 503 at once. Behind a load balancer, raise it to
    /// max_concurrent_requests.
    max_requests_per_address: Option<usize>, env "HEAPTIDE_MAX_REQUESTS_PER_ADDRESS",
        default DEFAULT_MAX_REQUESTS_PER_ADDRESS: usize = 64,
        check |n: &usize| within(n, 1, 100_000),
        example "16";
    /// Requests per second one address may start (as many again in a
    /// burst); past it, each waits its turn. Behind a load balancer, or a
    /// NAT that many agents share, raise it.
    request_rate_per_address: Option<f64>, env "HEAPTIDE_REQUEST_RATE_PER_ADDRESS",
        default DEFAULT_REQUEST_RATE_PER_ADDRESS: f64 = 50.0,
        check |r: &f64| if r.is_finite() && (1.0..=1_000_000.0).contains(r) {
            Ok(())
        } else {
            Err("must be a number of requests per second between 1 and 1000000".into())
        },
        example "20";
    /// Time a request's headers may take to arrive; also how long an idle
    /// kept-alive connection is held open.
    header_read_timeout: Option<Span>, env "HEAPTIDE_HEADER_READ_TIMEOUT",
        default DEFAULT_HEADER_READ_TIMEOUT: Span = Span(Duration::from_secs(15)),
        check |s| within(s, Span(Duration::from_secs(1)), Span(Duration::from_secs(600))),
        example "5s";
    /// Time a response's write may make no progress (a client that does
    /// not read) before the connection is closed.
    write_timeout: Option<Span>, env "HEAPTIDE_WRITE_TIMEOUT",
        default DEFAULT_WRITE_TIMEOUT: Span = Span(Duration::from_secs(15)),
        check |s| within(s, Span(Duration::from_secs(1)), Span(Duration::from_secs(600))),
        example "5s";
    /// Sends alerts to this URL as Alertmanager's webhook payload
    /// (repeatable; added to the file's `[[alerts.webhook]]`).
    alert_webhook: Vec<String>, env "HEAPTIDE_ALERT_WEBHOOK",
        example "http://127.0.0.1:9/hook";
    /// Pulls heap profiles from a pprof endpoint (Go's /debug/pprof/heap,
    /// jemalloc_pprof) as service NAME: NAME=URL (repeatable).
    scrape: Vec<String>, env "HEAPTIDE_SCRAPE",
        example "billing=http://127.0.0.1:9/debug/pprof/heap";
    /// Directory of debug files (unstripped binaries, `objcopy
    /// --only-keep-debug` files, or a `.build-id` tree) that names the
    /// addresses agents send unnamed (`HEAPTIDE_SYMBOLIZE=analyzer`), by
    /// build-id (repeatable).
    debug_dir: Vec<String>, env "HEAPTIDE_DEBUG_DIR",
        example "/usr/lib/debug";
    /// A debuginfod server asked for the debug files of build-ids found in
    /// no debug_dir (`GET <url>/buildid/<id>/debuginfo`).
    debuginfod: Option<String>, env "HEAPTIDE_DEBUGINFOD",
        check |u: &String| if u.starts_with("http://") || u.starts_with("https://") {
            Ok(())
        } else {
            Err("must be an http:// or https:// URL".into())
        },
        example "https://debuginfod.debian.net";
    /// Where the debug files in use are kept, by build-id; by default
    /// beside a SQLite store (`<store>.debug`), else in the temporary
    /// directory.
    symbol_cache: Option<PathBuf>, env "HEAPTIDE_SYMBOL_CACHE",
        example "/var/lib/heaptide/debug";
    /// How often each scrape target is pulled.
    scrape_interval: Option<Span>, env "HEAPTIDE_SCRAPE_INTERVAL",
        default DEFAULT_SCRAPE_INTERVAL: Span = Span(Duration::from_secs(60)),
        check |s| at_least(s, Duration::from_secs(1)),
        example "30s";
}

/// One field of a layer: a single value (`Option`) or a list (`Vec`).
trait Merge {
    fn merge(upper: Self, lower: Self) -> Self;
}

impl<T> Merge for Option<T> {
    fn merge(upper: Self, lower: Self) -> Self {
        upper.or(lower)
    }
}

impl<T> Merge for Vec<T> {
    fn merge(upper: Self, lower: Self) -> Self {
        [upper, lower].into_iter().flatten().collect()
    }
}

/// A field at its default, from the named constant's type.
trait Field<D> {
    fn of(default: D) -> Self;
}

impl<T, D: Into<T>> Field<D> for Option<T> {
    fn of(default: D) -> Self {
        Some(default.into())
    }
}

/// The help of a flag: the declaration's doc lines joined, and its
/// default, as clap would show a `default_value`.
fn help_text(doc: &str, default: Option<String>) -> String {
    let text = doc.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    match default {
        Some(d) => format!("{} [default: {d}]", text.trim()),
        None => text.trim().to_owned(),
    }
}

fn at_least(s: &Span, min: Duration) -> std::result::Result<(), String> {
    if s.0 < min {
        return Err(format!("must be at least {}", Span(min)));
    }
    Ok(())
}

fn within<T: PartialOrd + Copy + std::fmt::Display>(
    v: &T,
    min: T,
    max: T,
) -> std::result::Result<(), String> {
    if !(min..=max).contains(v) {
        return Err(format!("must be between {min} and {max}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_follows_the_naming_rule() {
        for s in table() {
            assert_eq!(s.env, format!("HEAPTIDE_{}", s.key.to_uppercase()), "{s:?}");
            assert!(!s.help.is_empty(), "{s:?}");
            assert_ne!(s.default.as_deref(), Some(s.example), "{s:?}");
        }
    }

    #[test]
    fn defaults_pass_their_own_checks() {
        Settings::defaults().check().unwrap();
        let e = Settings {
            retention: Some(Span(Duration::from_secs(60))),
            ..Settings::default()
        }
        .check()
        .unwrap_err();
        assert_eq!(e.to_string(), "retention: must be at least 1h");
    }
}
