//! The bounds every agent setting is held to, and a `Debug` that never
//! shows the token.

use std::time::Duration;

use crate::config::{check_name, invalid, Config};
use crate::error::Result;

impl std::fmt::Debug for Config {
    /// Everything but the token, which is only said to be there.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("service", &self.service)
            .field("instance", &self.instance)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("labels", &self.labels)
            .field("interval", &self.interval)
            .field("profile_interval", &self.profile_interval)
            .field("heap_sample_period", &self.heap_sample_period)
            .field("pause_tick", &self.pause_tick)
            .field("pause_threshold", &self.pause_threshold)
            .field("queue_bytes", &self.queue_bytes)
            .field("symbol_lines", &self.symbol_lines)
            .field("unwinder", &self.unwinder)
            .field("send_timeout", &self.send_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

/// The smallest queue: it must hold at least one typical heap profile
/// with room for the metric samples queued beside it. A profile of 2,000
/// stacks of 10 to 24 frames is 88 KB gzipped, 118 KB as sent in base64.
pub const MIN_QUEUE_BYTES: usize = 256 << 10;

impl Config {
    /// Checks every setting against its bounds: an interval of a
    /// nanosecond would spin a core, a timeout of an hour would hold
    /// `shutdown` for one.
    pub fn check(&self) -> Result<()> {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let durations = [
            ("HEAPTIDE_INTERVAL", self.interval, ms(10), s(3600)),
            (
                "HEAPTIDE_PROFILE_INTERVAL",
                self.profile_interval,
                ms(100),
                s(86_400),
            ),
            ("HEAPTIDE_PAUSE_TICK", self.pause_tick, ms(1), s(1)),
            (
                "HEAPTIDE_PAUSE_THRESHOLD",
                self.pause_threshold,
                ms(1),
                s(3600),
            ),
            ("send_timeout", self.send_timeout, ms(10), s(600)),
            ("shutdown_timeout", self.shutdown_timeout, ms(10), s(600)),
        ];
        for (key, value, min, max) in durations {
            if !(min..=max).contains(&value) {
                return Err(invalid(
                    key,
                    format!("{value:?}"),
                    &format!("must be between {min:?} and {max:?}"),
                ));
            }
        }
        if !(1..=(1u64 << 40)).contains(&self.heap_sample_period) {
            return Err(invalid(
                "HEAPTIDE_HEAP_SAMPLE_PERIOD",
                self.heap_sample_period.to_string(),
                "must be between 1 byte and 1 TiB",
            ));
        }
        if !(MIN_QUEUE_BYTES..=(1 << 30)).contains(&self.queue_bytes) {
            return Err(invalid(
                "HEAPTIDE_QUEUE_BYTES",
                self.queue_bytes.to_string(),
                "must be between 256 KiB (one heap profile) and 1 GiB",
            ));
        }
        check_name("HEAPTIDE_SERVICE", &self.service)?;
        check_name("HEAPTIDE_INSTANCE", &self.instance)
    }
}
