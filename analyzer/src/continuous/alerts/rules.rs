//! The alert rules of `analyzer serve`: the `[alerts]` table of its
//! config, with the defaults `docs/alerts.md` documents.

use std::time::Duration;

use serde::Deserialize;

use crate::select::{ms, Span};

/// What an alert is about: its `alertname` label.
pub mod name {
    /// A leak that exhausts its resource within a day.
    pub const LEAK_CRITICAL: &str = "HeaptideLeakCritical";
    /// A leak that exhausts its resource within a week.
    pub const LEAK_WARNING: &str = "HeaptideLeakWarning";
    /// A resource at its limit now.
    pub const EXHAUSTED: &str = "HeaptideExhausted";
    /// Long pauses, sustained.
    pub const PAUSE_P99: &str = "HeaptidePauseP99High";
    /// An instance that stopped sending.
    pub const NOT_REPORTING: &str = "HeaptideNotReporting";
    /// An evaluation pass that took longer than its interval.
    pub const EVALUATION_BEHIND: &str = "HeaptideEvaluationBehind";
    /// A pool or bounded queue saturated now, or trending to its
    /// capacity within the rule's `within`.
    pub const POOL_EXHAUSTION: &str = "HeaptidePoolExhaustion";
    /// A pool's slots in use, a queue's depth or a runtime's tasks that
    /// climb and are not given back.
    pub const POOL_LEAK: &str = "HeaptidePoolLeak";
}

/// How long a condition must hold before its alert fires (`for`), and how
/// long it must be gone before a firing alert resolves (`resolve_after`):
/// one noisy evaluation neither fires nor resolves an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub for_ms: i64,
    pub resolve_after_ms: i64,
}

fn span(d: &str) -> Span {
    // Only called with the literal defaults below.
    Span(humantime::parse_duration(d).unwrap_or(Duration::ZERO))
}

/// A leak rule: fires when a leak's time to exhaustion is under `within`.
/// Keys left out keep their defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakRule {
    pub within: Span,
    #[serde(rename = "for", default = "minute")]
    pub for_: Span,
    #[serde(default = "five_minutes")]
    pub resolve_after: Span,
    /// False turns the rule off.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// Fires for a resource at its limit, whatever its trend or how few
/// samples it has.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExhaustedRule {
    #[serde(rename = "for")]
    pub for_: Span,
    pub resolve_after: Span,
    pub enabled: bool,
}

impl Default for ExhaustedRule {
    fn default() -> Self {
        ExhaustedRule {
            for_: span("0s"),
            resolve_after: five_minutes(),
            enabled: true,
        }
    }
}

/// Fires when the p99 of the pauses of the last `window` is over
/// `p99_over`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PauseRule {
    pub p99_over: Span,
    pub window: Span,
    #[serde(rename = "for")]
    pub for_: Span,
    pub resolve_after: Span,
    pub enabled: bool,
}

impl Default for PauseRule {
    fn default() -> Self {
        PauseRule {
            p99_over: span("100ms"),
            window: minute(),
            for_: five_minutes(),
            resolve_after: five_minutes(),
            enabled: true,
        }
    }
}

/// Fires for an instance silent for longer than `after` (and for less
/// than a day: an instance gone that long is forgotten).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SilenceRule {
    pub after: Span,
    #[serde(rename = "for")]
    pub for_: Span,
    pub resolve_after: Span,
    pub enabled: bool,
}

impl Default for SilenceRule {
    fn default() -> Self {
        SilenceRule {
            after: five_minutes(),
            for_: span("0s"),
            resolve_after: span("0s"),
            enabled: true,
        }
    }
}

/// Fires when a full evaluation pass takes longer than the interval
/// between passes: findings and alerts then lag behind the data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehindRule {
    #[serde(rename = "for")]
    pub for_: Span,
    pub resolve_after: Span,
    pub enabled: bool,
}

impl Default for BehindRule {
    fn default() -> Self {
        BehindRule {
            for_: span("0s"),
            resolve_after: five_minutes(),
            enabled: true,
        }
    }
}

/// Fires for a pool, queue or runtime whose use climbs and is not given
/// back, whatever its runway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolLeakRule {
    #[serde(rename = "for")]
    pub for_: Span,
    pub resolve_after: Span,
    pub enabled: bool,
}

impl Default for PoolLeakRule {
    fn default() -> Self {
        PoolLeakRule {
            for_: span("10m"),
            resolve_after: five_minutes(),
            enabled: true,
        }
    }
}

fn yes() -> bool {
    true
}

fn minute() -> Span {
    span("1m")
}

fn five_minutes() -> Span {
    span("5m")
}

/// Where notifications go: `[[alerts.webhook]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// A file holding a bearer token sent with every call.
    pub token_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub kind: WebhookKind,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    /// Alertmanager's webhook payload, version 4.
    #[default]
    Alertmanager,
    /// A Slack incoming webhook's `{"text": ...}`.
    Slack,
}

impl WebhookKind {
    /// Whether the receiver can inhibit a warning under a critical of the
    /// same subject (Alertmanager can), so that it may be sent both.
    pub fn inhibits(self) -> bool {
        matches!(self, WebhookKind::Alertmanager)
    }
}

/// The `[alerts]` table. Every key is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRules {
    pub leak_critical: LeakRule,
    pub leak_warning: LeakRule,
    pub exhausted: ExhaustedRule,
    pub pause: PauseRule,
    pub not_reporting: SilenceRule,
    pub evaluation_behind: BehindRule,
    pub pool_exhaustion: LeakRule,
    pub pool_leak: PoolLeakRule,
    /// A firing alert is sent again this often.
    pub repeat_every: Span,
    /// The base of each alert's `generatorURL` (the instance page);
    /// `http://` and the listen address when unset.
    pub external_url: Option<String>,
    pub webhook: Vec<WebhookConfig>,
}

impl Default for AlertRules {
    fn default() -> Self {
        let leak = |within| LeakRule {
            within: span(within),
            for_: minute(),
            resolve_after: five_minutes(),
            enabled: true,
        };
        AlertRules {
            leak_critical: leak("24h"),
            leak_warning: leak("7d"),
            exhausted: ExhaustedRule::default(),
            pause: PauseRule::default(),
            not_reporting: SilenceRule::default(),
            evaluation_behind: BehindRule::default(),
            pool_exhaustion: leak("24h"),
            pool_leak: PoolLeakRule::default(),
            repeat_every: span("4h"),
            external_url: None,
            webhook: Vec::new(),
        }
    }
}

impl AlertRules {
    /// The timing of the rule named `alertname`.
    pub fn timing(&self, alertname: &str) -> Timing {
        let (f, r) = match alertname {
            name::LEAK_CRITICAL => (self.leak_critical.for_, self.leak_critical.resolve_after),
            name::LEAK_WARNING => (self.leak_warning.for_, self.leak_warning.resolve_after),
            name::EXHAUSTED => (self.exhausted.for_, self.exhausted.resolve_after),
            name::PAUSE_P99 => (self.pause.for_, self.pause.resolve_after),
            name::EVALUATION_BEHIND => (
                self.evaluation_behind.for_,
                self.evaluation_behind.resolve_after,
            ),
            name::POOL_EXHAUSTION => (
                self.pool_exhaustion.for_,
                self.pool_exhaustion.resolve_after,
            ),
            name::POOL_LEAK => (self.pool_leak.for_, self.pool_leak.resolve_after),
            _ => (self.not_reporting.for_, self.not_reporting.resolve_after),
        };
        Timing {
            for_ms: ms(f.0),
            resolve_after_ms: ms(r.0),
        }
    }

    /// The timing of an alert whose resource runs out in `runway_ms`: a
    /// rule's `for` is cut to a quarter of the runway, so that a leak
    /// that runs out in a few evaluation intervals fires while there is
    /// still time to act; `resolve_after` is kept.
    pub fn timing_for_runway(&self, alertname: &str, runway_ms: Option<i64>) -> Timing {
        let mut t = self.timing(alertname);
        if let Some(r) = runway_ms {
            t.for_ms = t.for_ms.min(r.max(0) / RUNWAY_SHARE_OF_FOR);
        }
        t
    }
}

/// A leak's `for` is at most its runway divided by this.
pub const RUNWAY_SHARE_OF_FOR: i64 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones_and_keys_are_checked() {
        let r: AlertRules = toml::from_str("").unwrap();
        assert_eq!(r.leak_critical.within.0, Duration::from_secs(86_400));
        assert_eq!(r.leak_warning.within.0, Duration::from_secs(7 * 86_400));
        assert_eq!(r.pause.p99_over.0, Duration::from_millis(100));
        assert_eq!(r.not_reporting.after.0, Duration::from_secs(300));
        assert_eq!(r.timing(name::LEAK_CRITICAL).for_ms, 60_000);
        assert_eq!(r.timing(name::EXHAUSTED).for_ms, 0);
        assert_eq!(r.timing(name::POOL_EXHAUSTION).for_ms, 60_000);
        assert_eq!(r.timing(name::POOL_LEAK).for_ms, 600_000);
        assert_eq!(
            r.timing_for_runway(name::LEAK_CRITICAL, Some(120_000))
                .for_ms,
            30_000,
            "a two-minute runway waits half a minute, not the rule's minute"
        );
        assert_eq!(
            r.timing_for_runway(name::LEAK_CRITICAL, Some(3_600_000))
                .for_ms,
            60_000
        );
        let r: AlertRules =
            toml::from_str("[leak_critical]\nwithin = \"2h\"\nresolve_after = \"1s\"").unwrap();
        assert_eq!(r.timing(name::LEAK_CRITICAL).resolve_after_ms, 1000);
        assert_eq!(r.timing(name::LEAK_CRITICAL).for_ms, 60_000);
        let e = toml::from_str::<AlertRules>("[pause]\np99 = \"1s\"").unwrap_err();
        assert!(e.to_string().contains("p99"), "{e}");
        let e =
            toml::from_str::<AlertRules>("[[webhook]]\nurl = \"x\"\nkind = \"pager\"").unwrap_err();
        assert!(e.to_string().contains("pager"), "{e}");
    }
}
