//! The shapes production leaks take beyond a straight line, and healthy
//! series with memory: slope changes, staircases of heap, threads and
//! fds, gaps, downsampled data, a leaking instance among healthy peers,
//! random walks, AR(1) noise and a daily cycle seen from its peak. Also the
//! sweep of growth rates against noise that finds the detection floor.

use crate::scenarios::{run, single, Gen, Generated, Kind, Scenario, GIB, MIB};

/// Times of steps from 0 to `hours`, about `every_h` apart (uniform jitter
/// of half the spacing), or Poisson when `poisson`.
fn step_times(g: &mut Gen, hours: f64, every_h: f64, poisson: bool) -> Vec<f64> {
    let mut out = Vec::new();
    let mut t = 0.0;
    loop {
        t += if poisson {
            -every_h * (1.0 - g.uniform()).max(1e-12).ln()
        } else {
            every_h * (0.75 + 0.5 * g.uniform())
        };
        if t >= hours {
            return out;
        }
        out.push(t);
    }
}

/// A staircase: `base`, plus `step` at each step time, plus `noise(g)`.
fn stairs(
    g: &mut Gen,
    hours: f64,
    every_h: f64,
    poisson: bool,
    base: f64,
    step: f64,
    noise: fn(&mut Gen) -> f64,
) -> Generated {
    let times = step_times(g, hours, every_h, poisson);
    single(run(0.0, hours, g, |t, g| {
        base + step * times.iter().take_while(|s| **s <= t).count() as f64 + noise(g)
    }))
}

fn staircase(name: &'static str, limit: f64, generate: fn(&mut Gen) -> Generated) -> Scenario {
    Scenario {
        name,
        leak: true,
        kind: Kind::Resource,
        window_h: 24.0,
        eval_h: 30.0,
        leak_start_h: 0.0,
        limit,
        generate,
    }
}

/// Leaks in the shapes production shows.
pub fn leaks() -> Vec<Scenario> {
    let mut all = slope_change();
    all.extend(staircases());
    all.extend(leaks_as_stored());
    all
}

/// Growth that begins halfway through the window, with no step.
fn slope_change() -> Vec<Scenario> {
    vec![Scenario {
        name: "slope change, no step (flat 12 h, then 20 MiB/h)",
        leak: true,
        kind: Kind::Resource,
        window_h: 24.0,
        eval_h: 24.0,
        leak_start_h: 12.0,
        limit: 2.0 * GIB,
        generate: |g| {
            single(run(0.0, 120.0, g, |t, g| {
                600.0 * MIB + 20.0 * MIB * (t - 12.0).max(0.0) + 8.0 * MIB * g.normal()
            }))
        },
    }]
}

/// Leaks that grow in steps.
fn staircases() -> Vec<Scenario> {
    vec![
        staircase("heap staircase, 40 MiB every 3 h", 2.0 * GIB, |g| {
            stairs(g, 200.0, 3.0, false, 800.0 * MIB, 40.0 * MIB, |g| {
                8.0 * MIB * g.normal()
            })
        }),
        staircase(
            "heap staircase, 10 MiB about hourly (Poisson)",
            2.0 * GIB,
            |g| {
                stairs(g, 200.0, 1.0, true, 800.0 * MIB, 10.0 * MIB, |g| {
                    3.0 * MIB * g.normal()
                })
            },
        ),
        staircase(
            "thread staircase, one per failed reconnect (Poisson, 40 min)",
            512.0,
            |g| {
                stairs(g, 400.0, 0.67, true, 24.0, 1.0, |g| {
                    (3.0 * g.uniform()).floor()
                })
            },
        ),
        staircase("thread staircase, 5 every 4 h", 512.0, |g| {
            stairs(g, 500.0, 4.0, false, 24.0, 5.0, |g| {
                (3.0 * g.uniform()).floor()
            })
        }),
        staircase("fd staircase, 20 every 2 h amid churn", 4096.0, |g| {
            stairs(g, 500.0, 2.0, false, 200.0, 20.0, |g| {
                ((30.0 + 12.0 * g.normal()).max(0.0) * g.uniform()).round()
            })
        }),
        staircase("fd staircase, one every 20 min", 1024.0, |g| {
            stairs(g, 400.0, 0.33, false, 120.0, 1.0, |g| {
                (4.0 * g.uniform()).floor()
            })
        }),
    ]
}

/// Leaks seen through gaps, retention and a fleet.
fn leaks_as_stored() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "leak with gaps of hours",
            leak: true,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 30.0,
            leak_start_h: 0.0,
            limit: 2.0 * GIB,
            generate: |g| {
                let mut s = single(run(0.0, 160.0, g, |t, g| {
                    512.0 * MIB + 12.0 * MIB * t + 8.0 * MIB * g.normal()
                }));
                // Nothing from 10 h to 14 h and from 20 h to 23 h.
                s.segments[0]
                    .retain(|p| !(10.0..14.0).contains(&p.0) && !(20.0..23.0).contains(&p.0));
                s
            },
        },
        Scenario {
            name: "leak in data downsampled by retention (10-min floors)",
            leak: true,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 30.0,
            leak_start_h: 0.0,
            limit: 2.0 * GIB,
            generate: |g| {
                let mut s = single(run(0.0, 160.0, g, |t, g| {
                    512.0 * MIB + 12.0 * MIB * t + 8.0 * MIB * g.normal()
                }));
                s.segments[0] = s.segments[0]
                    .chunks(10)
                    .map(|c| (c[0].0, c.iter().map(|p| p.1).fold(f64::INFINITY, f64::min)))
                    .collect();
                s
            },
        },
        Scenario {
            name: "one leaking instance in a fleet of ten",
            leak: true,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 30.0,
            leak_start_h: 0.0,
            limit: 2.0 * GIB,
            generate: |g| {
                // Every instance follows the fleet's load; one also leaks.
                let load: Vec<f64> = (0..160 * 60).map(|_| g.normal()).collect();
                let instance = |g: &mut Gen, leak: f64| {
                    run(0.0, 160.0, g, |t, g| {
                        let i = ((t * 60.0) as usize).min(load.len() - 1);
                        700.0 * MIB + 20.0 * MIB * load[i] + 6.0 * MIB * g.normal() + leak * t
                    })
                };
                let mut s = single(instance(g, 8.0 * MIB));
                s.peers = (0..9).map(|_| vec![instance(g, 0.0)]).collect();
                s
            },
        },
    ]
}

/// Healthy series that wander, cycle or step.
pub fn healthy() -> Vec<Scenario> {
    let healthy = |name, generate| Scenario {
        name,
        leak: false,
        kind: Kind::Resource,
        window_h: 24.0,
        eval_h: 36.0,
        leak_start_h: 0.0,
        limit: 4.0 * GIB,
        generate,
    };
    vec![
        healthy("random walk", |g| {
            let mut level = 1.0 * GIB;
            single(run(0.0, 48.0, g, |_, g| {
                level += 1.0 * MIB * g.normal();
                level
            }))
        }),
        healthy("AR(1) noise, phi 0.98 a minute", |g| {
            let mut dev = 0.0;
            single(run(0.0, 48.0, g, |_, g| {
                dev = 0.98 * dev + 3.0 * MIB * g.normal();
                1.0 * GIB + dev
            }))
        }),
        healthy("daily cycle without a leak, seen from its peak", |g| {
            // Peaks at 12 h and 36 h: the window ends at a peak.
            single(run(0.0, 48.0, g, |t, g| {
                1.0 * GIB
                    + 300.0 * MIB * (2.0 * std::f64::consts::PI * (t - 6.0) / 24.0).sin()
                    + 8.0 * MIB * g.normal()
            }))
        }),
        healthy("two deploys, each a step up", |g| {
            single(run(0.0, 48.0, g, |t, g| {
                let steps = f64::from(u8::from(t > 16.0) + u8::from(t > 28.0));
                800.0 * MIB + 60.0 * MIB * steps + 8.0 * MIB * g.normal()
            }))
        }),
        healthy("healthy fleet peer with gaps", |g| {
            let mut s = single(run(0.0, 48.0, g, |_, g| {
                900.0 * MIB + 8.0 * MIB * g.normal()
            }));
            s.segments[0].retain(|p| !(20.0..26.0).contains(&p.0));
            s
        }),
    ]
}

/// Growth rates against 8 MiB of noise, for the detection floor.
pub fn sweep() -> Vec<(f64, Scenario)> {
    fn at(rate: f64) -> fn(&mut Gen) -> Generated {
        match (rate * 8.0) as u32 {
            1 => |g| line(g, 0.125),
            2 => |g| line(g, 0.25),
            4 => |g| line(g, 0.5),
            8 => |g| line(g, 1.0),
            16 => |g| line(g, 2.0),
            _ => |g| line(g, 4.0),
        }
    }
    fn line(g: &mut Gen, rate: f64) -> Generated {
        single(run(0.0, 48.0, g, |t, g| {
            1.0 * GIB + rate * MIB * t + 8.0 * MIB * g.normal()
        }))
    }
    [0.125, 0.25, 0.5, 1.0, 2.0, 4.0]
        .into_iter()
        .map(|rate| {
            (
                rate,
                Scenario {
                    name: "sweep",
                    leak: true,
                    kind: Kind::Resource,
                    window_h: 24.0,
                    eval_h: 24.0,
                    leak_start_h: 0.0,
                    limit: 64.0 * GIB,
                    generate: at(rate),
                },
            )
        })
        .collect()
}
