//! Pause measurement: a jHiccup-style meter thread, an optional tokio probe,
//! and an API for the application's own stop-the-world work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use heaptide_wire::{PauseEvent, PauseSource};

/// Most pause events kept between two samples; more are counted as dropped.
const MAX_EVENTS: usize = 1024;

/// Per-interval lateness histograms and pause events, shared by every
/// source of pauses and drained by the sampler.
pub(crate) struct PauseRecorder {
    threshold: Duration,
    meter: Mutex<Histogram<u64>>,
    tokio: Mutex<Histogram<u64>>,
    events: Mutex<Vec<PauseEvent>>,
    pub(crate) dropped_events: AtomicU64,
}

/// Percentiles of one interval, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

fn histogram() -> Histogram<u64> {
    // Microseconds from 1 µs to one hour at 2 significant digits: a few KiB.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static histogram bounds are valid")
}

impl PauseRecorder {
    pub(crate) fn new(threshold: Duration) -> Self {
        PauseRecorder {
            threshold,
            meter: Mutex::new(histogram()),
            tokio: Mutex::new(histogram()),
            events: Mutex::new(Vec::new()),
            dropped_events: AtomicU64::new(0),
        }
    }

    /// Pauses at least this long are recorded as events.
    #[cfg(feature = "tokio")]
    pub(crate) fn threshold(&self) -> Duration {
        self.threshold
    }

    /// Records one tick that came `late`. A stall hides the ticks that
    /// should have happened during it (coordinated omission): a 300 ms stall
    /// at a 5 ms tick would be one sample among thousands and vanish from
    /// p99. As jHiccup does, the missed ticks are recorded too, each as late
    /// as it would have been (`record_correct`).
    pub(crate) fn record_lateness(
        &self,
        source: PauseSource,
        late: Duration,
        started: Instant,
        tick: Duration,
    ) {
        let hist = if source == PauseSource::Tokio {
            &self.tokio
        } else {
            &self.meter
        };
        let micros = (late.as_micros() as u64).clamp(1, 3_600_000_000);
        let interval = (tick.as_micros() as u64).max(1);
        if let Ok(mut h) = hist.lock() {
            if h.record_correct(micros, interval).is_err() {
                h.saturating_record(micros);
            }
        }
        if late >= self.threshold {
            self.push_event(source, String::new(), started, late);
        }
    }

    pub(crate) fn push_event(
        &self,
        source: PauseSource,
        name: String,
        started: Instant,
        d: Duration,
    ) {
        let start_ms = crate::runtime::now_ms() - started.elapsed().as_millis() as i64;
        let ev = PauseEvent {
            start_ms,
            duration_ms: d.as_secs_f64() * 1000.0,
            source,
            name,
        };
        match self.events.lock() {
            Ok(mut evs) if evs.len() < MAX_EVENTS => evs.push(ev),
            _ => {
                self.dropped_events.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes this interval's events and percentiles, and starts anew.
    pub(crate) fn drain(&self) -> (Vec<PauseEvent>, Option<Percentiles>, Option<Percentiles>) {
        let events = self
            .events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default();
        let take = |m: &Mutex<Histogram<u64>>| {
            let mut h = m.lock().ok()?;
            if h.is_empty() {
                return None;
            }
            let ms = |v: u64| v as f64 / 1000.0;
            let p = Percentiles {
                p50: ms(h.value_at_quantile(0.5)),
                p99: ms(h.value_at_quantile(0.99)),
                p999: ms(h.value_at_quantile(0.999)),
                max: ms(h.max()),
            };
            h.reset();
            Some(p)
        };
        (events, take(&self.meter), take(&self.tokio))
    }
}

/// Runs the pause meter until `stop` is set: sleep one tick, and record how
/// much later than asked the thread woke. A stall of the whole process (GC-
/// like work, swapping, SIGSTOP, a starved CPU quota) shows as lateness.
pub(crate) fn run_meter(
    rec: &PauseRecorder,
    tick: Duration,
    stop: &AtomicBool,
    cpu: &crate::runtime::ThreadCost,
) {
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let asked = Instant::now();
        std::thread::sleep(tick);
        let late = asked.elapsed().saturating_sub(tick);
        rec.record_lateness(PauseSource::Meter, late, asked + tick, tick);
        n = n.wrapping_add(1);
        if n.is_multiple_of(256) {
            cpu.update();
        }
    }
    cpu.update();
}

/// A named pause of the application's own, recorded when dropped.
///
/// ```no_run
/// let _pause = heaptide_agent::pause("cache-rebuild");
/// // ... stop-the-world work ...
/// ```
#[must_use = "the pause is recorded when the guard is dropped"]
pub struct PauseGuard {
    name: Option<String>,
    started: Instant,
    recorder: Option<Arc<PauseRecorder>>,
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        if let (Some(rec), Some(name)) = (self.recorder.take(), self.name.take()) {
            rec.push_event(PauseSource::App, name, self.started, self.started.elapsed());
        }
    }
}

/// Starts a named application pause; it ends when the guard drops. Does
/// nothing when no agent runs.
pub fn pause(name: impl Into<String>) -> PauseGuard {
    PauseGuard {
        name: Some(name.into()),
        started: Instant::now(),
        recorder: crate::runtime::recorder(),
    }
}

/// Records an application pause that already happened.
pub fn record_pause(name: impl Into<String>, duration: Duration) {
    if let Some(rec) = crate::runtime::recorder() {
        let started = Instant::now()
            .checked_sub(duration)
            .unwrap_or_else(Instant::now);
        rec.push_event(PauseSource::App, name.into(), started, duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_over_threshold_is_an_event() {
        let rec = PauseRecorder::new(Duration::from_millis(10));
        let t = Instant::now();
        let tick = Duration::from_secs(1);
        rec.record_lateness(PauseSource::Meter, Duration::from_micros(200), t, tick);
        rec.record_lateness(PauseSource::Meter, Duration::from_millis(300), t, tick);
        let (events, meter, tokio) = rec.drain();
        assert_eq!(events.len(), 1);
        assert!((events[0].duration_ms - 300.0).abs() < 1.0);
        let m = meter.unwrap();
        assert!(m.max >= 299.0 && m.max <= 302.0, "{m:?}");
        assert!(m.p50 < 1.0);
        assert!(tokio.is_none());
        assert!(rec.drain().1.is_none(), "drain resets");
    }

    /// A 300 ms stall among a thousand on-time 5 ms ticks: uncorrected it
    /// is one sample in a thousand and p99 stays near zero; corrected, the
    /// sixty ticks it hid are counted, and p99 shows the stall.
    #[test]
    fn a_stall_shows_in_p99_despite_coordinated_omission() {
        let rec = PauseRecorder::new(Duration::from_secs(10));
        let (t, tick) = (Instant::now(), Duration::from_millis(5));
        for _ in 0..1000 {
            rec.record_lateness(PauseSource::Meter, Duration::from_micros(50), t, tick);
        }
        rec.record_lateness(PauseSource::Meter, Duration::from_millis(300), t, tick);
        let m = rec.drain().1.unwrap();
        assert!(m.p99 > 200.0, "{m:?}");
        assert!(m.p50 < 1.0, "{m:?}");
    }
}
