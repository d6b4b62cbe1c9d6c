//! Ready adapters for the pools Rust services use: each registers a
//! polled pool ([`crate::watch_pool`]) that reads the pool's own counts,
//! so the service changes nothing in its hot path.
//!
//! - `tokio::sync::Semaphore` (feature `tokio`): permits held against
//!   the permits it was made with. tokio does not say how many wait.
//! - `deadpool::managed::Pool` (feature `deadpool`): its `status()`
//!   gives size, available, waiting and max size, all four.
//! - `bb8::Pool` (feature `bb8`): its `state()` gives connections and
//!   idle ones; bb8 exposes neither its max size nor its waiters, so the
//!   capacity is passed in and waiting reads 0.
//!
//! sqlx's `Pool` has `size()`, `num_idle()` and `options().get_max_connections()`;
//! it is not a dependency here (it would pull a database driver into
//! every service's agent), and `watch_pool` covers it in three lines:
//! see the crate's README.

use crate::gauges::{watch_pool, GaugeState};

/// Watches a semaphore that was made with `permits` permits: the permits
/// held are the pool's slots in use.
#[cfg(feature = "tokio")]
pub fn watch_semaphore(
    name: &str,
    semaphore: std::sync::Arc<tokio::sync::Semaphore>,
    permits: usize,
) {
    watch_pool(name, move || {
        let free = semaphore.available_permits().min(permits);
        GaugeState {
            in_use: (permits - free) as u64,
            idle: free as u64,
            waiting: 0,
            capacity: Some(permits as u64),
        }
    });
}

/// Watches a deadpool pool (a clone of it, which shares its state).
#[cfg(feature = "deadpool")]
pub fn watch_deadpool<M>(name: &str, pool: deadpool::managed::Pool<M>)
where
    M: deadpool::managed::Manager + 'static,
    M::Type: Send,
{
    watch_pool(name, move || {
        let s = pool.status();
        GaugeState {
            in_use: s.size.saturating_sub(s.available) as u64,
            idle: s.available as u64,
            waiting: s.waiting as u64,
            capacity: Some(s.max_size as u64),
        }
    });
}

/// Watches a bb8 pool built with `max_size` connections (bb8 does not
/// say it back).
#[cfg(feature = "bb8")]
pub fn watch_bb8<M>(name: &str, pool: bb8::Pool<M>, max_size: u32)
where
    M: bb8::ManageConnection,
{
    watch_pool(name, move || {
        let s = pool.state();
        GaugeState {
            in_use: u64::from(s.connections.saturating_sub(s.idle_connections)),
            idle: u64::from(s.idle_connections),
            waiting: 0,
            capacity: Some(u64::from(max_size)),
        }
    });
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;

    fn sample() -> crate::process::Metrics {
        let mut m = crate::process::Metrics::new();
        crate::gauges::sample(&mut m);
        m
    }

    /// Connections that are numbers: what the pools count is theirs.
    #[cfg(feature = "bb8")]
    struct Numbers;

    #[cfg(feature = "bb8")]
    impl bb8::ManageConnection for Numbers {
        type Connection = u32;
        type Error = ();
        async fn connect(&self) -> Result<u32, ()> {
            Ok(7)
        }
        async fn is_valid(&self, _: &mut u32) -> Result<(), ()> {
            Ok(())
        }
        fn has_broken(&self, _: &mut u32) -> bool {
            false
        }
    }

    #[cfg(feature = "bb8")]
    #[test]
    fn a_bb8_pool_reads_as_connections_checked_out() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = bb8::Pool::builder()
                .max_size(5)
                .min_idle(Some(0))
                .build(Numbers)
                .await
                .unwrap();
            watch_bb8("bb8 test", pool.clone(), 5);
            let a = pool.get().await.unwrap();
            let b = pool.get().await.unwrap();
            drop(b);
            let m = sample();
            assert_eq!(m["pool.bb8_test.in_use"], 1.0);
            assert_eq!(m["pool.bb8_test.idle"], 1.0);
            assert_eq!(m["pool.bb8_test.capacity"], 5.0);
            drop(a);
        });
    }

    #[test]
    fn a_semaphore_reads_as_permits_held() {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
        watch_semaphore("sem test", sem.clone(), 4);
        let _a = sem.clone().try_acquire_owned().unwrap();
        let _b = sem.clone().try_acquire_owned().unwrap();
        let m = sample();
        assert_eq!(m["pool.sem_test.in_use"], 2.0);
        assert_eq!(m["pool.sem_test.idle"], 2.0);
        assert_eq!(m["pool.sem_test.capacity"], 4.0);
    }
}
