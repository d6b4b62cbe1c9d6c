//! The bounded queue between the sampler and the sender.
//!
//! Backpressure is an explicit choice here: when the queue is full the
//! *oldest* items are dropped and counted, because the newest data says the
//! most about a leak in progress, and the host must never wait on us.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use heaptide_wire::{EncodedProfile, MetricSample, PauseEvent};

#[derive(Debug, Clone)]
pub(crate) enum Item {
    Metrics(MetricSample),
    Pause(PauseEvent),
    Profile(EncodedProfile),
}

impl Item {
    /// Approximate encoded size, which is what the bound is about.
    pub(crate) fn size(&self) -> usize {
        match self {
            Item::Metrics(s) => 48 + s.metrics.keys().map(|k| k.len() + 24).sum::<usize>(),
            Item::Pause(p) => 96 + p.name.len(),
            Item::Profile(p) => profile_size(p),
        }
    }
}

/// A profile's approximate encoded size: its pprof and its age rows.
pub(crate) fn profile_size(p: &EncodedProfile) -> usize {
    96 + p.pprof_gz_base64.len() + p.ages.iter().map(age_row_len).sum::<usize>()
}

/// The JSON length of one age row, `{"sample":N,"bytes":[...]}`: a large
/// profile has thousands, which the batch limit must count.
fn age_row_len(row: &heaptide_wire::StackAges) -> usize {
    let digits = |n: u64| n.checked_ilog10().map_or(1, |d| d as usize + 1);
    22 + digits(u64::from(row.sample)) + row.bytes.iter().map(|b| digits(*b) + 1).sum::<usize>()
}

#[derive(Default)]
struct State {
    items: VecDeque<(Item, usize)>,
    bytes: usize,
    dropped_items: u64,
    dropped_bytes: u64,
    closed: bool,
}

pub(crate) struct Queue {
    max_bytes: usize,
    state: Mutex<State>,
    ready: Condvar,
}

impl Queue {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Queue {
            max_bytes,
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
        }
    }

    /// Adds items, dropping the oldest ones that no longer fit. Never blocks
    /// for longer than the queue's own short critical section.
    pub(crate) fn push_all(&self, items: impl IntoIterator<Item = Item>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for item in items {
            let size = item.size();
            if size > self.max_bytes {
                st.dropped_items += 1;
                st.dropped_bytes += size as u64;
                continue;
            }
            while st.bytes + size > self.max_bytes {
                let Some((_, old)) = st.items.pop_front() else {
                    break;
                };
                st.bytes -= old;
                st.dropped_items += 1;
                st.dropped_bytes += old as u64;
            }
            st.bytes += size;
            st.items.push_back((item, size));
        }
        drop(st);
        self.ready.notify_one();
    }

    /// Takes up to `max_bytes` of the oldest items (at least one), waiting
    /// up to `wait` for any to arrive. Returns nothing once closed and empty.
    pub(crate) fn take(&self, max_bytes: usize, wait: Duration) -> Vec<Item> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let Ok((mut st, _)) = self
            .ready
            .wait_timeout_while(st, wait, |s| s.items.is_empty() && !s.closed)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut taken = 0;
        while let Some((_, size)) = st.items.front() {
            if !out.is_empty() && taken + size > max_bytes {
                break;
            }
            let Some((item, size)) = st.items.pop_front() else {
                break;
            };
            st.bytes -= size;
            taken += size;
            out.push(item);
        }
        out
    }

    /// Counts items the sender gave up on as dropped.
    pub(crate) fn count_dropped(&self, items: u64, bytes: u64) {
        if let Ok(mut st) = self.state.lock() {
            st.dropped_items += items;
            st.dropped_bytes += bytes;
        }
    }

    /// Wakes the sender and makes `take` stop waiting.
    pub(crate) fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
        }
        self.ready.notify_all();
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.items.is_empty())
            .unwrap_or(true)
    }

    pub(crate) fn is_closed_and_empty(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.closed && s.items.is_empty())
            .unwrap_or(true)
    }

    /// (queued bytes, dropped items, dropped bytes)
    pub(crate) fn stats(&self) -> (usize, u64, u64) {
        self.state
            .lock()
            .map(|s| (s.bytes, s.dropped_items, s.dropped_bytes))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause(n: i64) -> Item {
        Item::Pause(PauseEvent {
            start_ms: n,
            duration_ms: 1.0,
            source: heaptide_wire::PauseSource::Meter,
            name: String::new(),
        })
    }

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let q = Queue::new(96 * 3);
        q.push_all((0..5).map(pause));
        let (bytes, dropped, dropped_bytes) = q.stats();
        assert_eq!((bytes, dropped, dropped_bytes), (96 * 3, 2, 192));
        let got = q.take(usize::MAX, Duration::ZERO);
        let starts: Vec<i64> = got
            .iter()
            .map(|i| match i {
                Item::Pause(p) => p.start_ms,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(starts, vec![2, 3, 4]);
    }

    #[test]
    fn a_profile_counts_its_age_rows() {
        let ages: Vec<_> = (0..1000)
            .map(|i| heaptide_wire::StackAges {
                sample: i,
                bytes: [123_456, 0, 0, 0, 0, 0, 1],
            })
            .collect();
        let p = EncodedProfile {
            ts_ms: 0,
            sample_period_bytes: 1,
            pprof_gz_base64: String::new(),
            ages: ages.clone(),
        };
        let json: usize = ages
            .iter()
            .map(|a| serde_json::to_vec(a).unwrap().len() + 1)
            .sum();
        let size = Item::Profile(p).size();
        assert!(
            size >= json && size < json + 200,
            "{size} for {json} bytes of rows"
        );
    }

    #[test]
    fn take_respects_batch_size_but_always_makes_progress() {
        let q = Queue::new(1 << 20);
        q.push_all((0..4).map(pause));
        assert_eq!(q.take(100, Duration::ZERO).len(), 1);
        assert_eq!(q.take(200, Duration::ZERO).len(), 2);
        assert!(!q.is_empty());
    }
}
