//! Pools and queues: counts of slots in use or items waiting, against a
//! capacity. Healthy pools are busy under load and drain when it falls,
//! and may saturate at a peak; leaking ones keep slots checked out, under
//! the same noisy, bursty load.

use crate::scenarios::{run, single, Gen, Generated, Kind, Scenario};

/// Slots in use under everyday load: about `mean`, Poisson-like, with a
/// burst now and then of `burst` more.
fn load(g: &mut Gen, mean: f64, burst: f64) -> f64 {
    let base = mean + mean.sqrt() * g.normal();
    let b = if g.uniform() < 0.03 {
        burst * g.uniform()
    } else {
        0.0
    };
    (base + b).round().max(0.0)
}

fn scenario(
    name: &'static str,
    leak: bool,
    limit: f64,
    gen: fn(&mut Gen) -> Generated,
) -> Scenario {
    Scenario {
        name,
        leak,
        kind: Kind::Resource,
        window_h: 24.0,
        eval_h: 30.0,
        leak_start_h: 0.0,
        limit,
        generate: gen,
    }
}

pub fn all() -> Vec<Scenario> {
    let mut all = leaking();
    all.extend(healthy());
    all
}

fn leaking() -> Vec<Scenario> {
    vec![
        scenario(
            "pool: slow leak of connections under bursty load",
            true,
            100.0,
            |g| {
                single(run(0.0, 120.0, g, |t, g| {
                    (load(g, 10.0, 20.0) + (1.5 * t).floor()).min(100.0)
                }))
            },
        ),
        // About one an hour (Poisson), steps of one slot amid load that
        // wanders by more: 64 run out after some 58 h.
        scenario(
            "pool: a connection lost now and then (steps)",
            true,
            64.0,
            |g| {
                let mut lost = Vec::new();
                let mut t = 0.0;
                while t < 120.0 {
                    t += -(1.0 - g.uniform()).max(1e-12).ln();
                    lost.push(t);
                }
                single(run(0.0, 120.0, g, move |t, g| {
                    let held = lost.iter().take_while(|s| **s <= t).count() as f64;
                    (load(g, 6.0, 10.0) + held).min(64.0)
                }))
            },
        ),
        Scenario {
            leak_start_h: 12.0,
            ..scenario("pool: leak that starts after a deploy", true, 100.0, |g| {
                single(run(0.0, 120.0, g, |t, g| {
                    let leaked = if t < 12.0 {
                        0.0
                    } else {
                        (3.0 * (t - 12.0)).floor()
                    };
                    (load(g, 12.0, 20.0) + leaked).min(100.0)
                }))
            })
        },
        scenario(
            "queue: consumer slower than its producer",
            true,
            200_000.0,
            |g| {
                single(run(0.0, 120.0, g, |t, g| {
                    (3_000.0 * t + 400.0 * g.uniform() * load(g, 5.0, 40.0)).min(200_000.0)
                }))
            },
        ),
    ]
}

fn healthy() -> Vec<Scenario> {
    vec![
        scenario("pool: busy under bursty load", false, 50.0, |g| {
            single(run(0.0, 120.0, g, |_, g| {
                // Bursts pin it at its capacity for a minute at a time.
                if g.uniform() < 0.02 {
                    50.0
                } else {
                    load(g, 8.0, 30.0).min(50.0)
                }
            }))
        }),
        Scenario {
            eval_h: 40.0,
            ..scenario(
                "pool: saturated at the daily peak, then drained",
                false,
                50.0,
                |g| {
                    single(run(0.0, 120.0, g, |t, g| {
                        let day = (2.0 * std::f64::consts::PI * t / 24.0).sin().max(0.0);
                        (load(g, 6.0 + 60.0 * day * day, 10.0)).min(50.0)
                    }))
                },
            )
        },
        scenario("queue: spikes that drain", false, 100_000.0, |g| {
            let mut depth = 0.0f64;
            single(run(0.0, 120.0, g, move |_, g| {
                if g.uniform() < 0.01 {
                    depth += 2_000.0 * g.uniform();
                }
                // The consumer takes a fifth of the backlog a minute.
                depth *= 0.8;
                depth.round() + load(g, 3.0, 5.0)
            }))
        }),
    ]
}
