//! Labelled synthetic series for measuring the engine: seeded, with many
//! runs per scenario. `benches/detection.rs` runs them and writes
//! `docs/detection.md`.
//!
//! Time is in hours, one point a minute. Every scenario runs long enough
//! past its evaluation time to know when the resource would really run out.

use std::collections::HashMap;

use heaptide_analyzer::detect::stats::Pt;

/// What kind of data a scenario produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A resource series (heap bytes, fds, threads).
    Resource,
    /// Per-site sampled heap profiles; the resource is their sum.
    Sites,
}

#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub leak: bool,
    pub kind: Kind,
    /// The engine looks back this far.
    pub window_h: f64,
    /// When the judgement is made.
    pub eval_h: f64,
    /// When the leak began (leaks only).
    pub leak_start_h: f64,
    pub limit: f64,
    pub generate: fn(&mut Gen) -> Generated,
}

/// One run of a scenario.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Segments (process lifetimes) in time order.
    pub segments: Vec<Vec<Pt>>,
    /// Per-site series (site scenarios): stack id to points, and which
    /// stack leaks, if any.
    pub sites: HashMap<i64, Vec<Pt>>,
    pub leaking_site: Option<i64>,
    /// The site that grows in site scenarios: the leak, or a filling cache
    /// that must not be named.
    pub special_site: Option<i64>,
    /// Restarts before exhaustion make time to exhaustion meaningless.
    pub exhaustion_defined: bool,
    /// Healthy peers of the same service, each split at restarts.
    pub peers: Vec<Vec<Vec<Pt>>>,
}

impl Generated {
    /// The points of `[from, to]`, split at restarts.
    pub fn window(&self, from: f64, to: f64) -> Vec<Vec<Pt>> {
        self.segments
            .iter()
            .map(|s| {
                s.iter()
                    .copied()
                    .filter(|p| p.0 >= from && p.0 <= to)
                    .collect::<Vec<_>>()
            })
            .filter(|s: &Vec<Pt>| !s.is_empty())
            .collect()
    }

    pub fn sites_window(&self, from: f64, to: f64) -> HashMap<i64, Vec<Pt>> {
        self.sites
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    v.iter()
                        .copied()
                        .filter(|p| p.0 >= from && p.0 <= to)
                        .collect(),
                )
            })
            .collect()
    }

    /// The first time after `t` that the series reaches `limit`.
    pub fn exhaustion_after(&self, t: f64, limit: f64) -> Option<f64> {
        self.segments
            .iter()
            .flatten()
            .find(|p| p.0 > t && p.1 >= limit)
            .map(|p| p.0)
    }
}

/// A seeded source of noise.
pub struct Gen {
    rng: fastrand::Rng,
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        Gen {
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    pub fn uniform(&mut self) -> f64 {
        self.rng.f64()
    }

    /// Standard normal, by Box–Muller.
    pub fn normal(&mut self) -> f64 {
        let u1 = self.rng.f64().max(1e-300);
        let u2 = self.rng.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Pareto with shape `alpha` and scale 1: heavy-tailed.
    pub fn pareto(&mut self, alpha: f64) -> f64 {
        (1.0 - self.rng.f64()).max(1e-12).powf(-1.0 / alpha)
    }
}

pub const MIB: f64 = 1024.0 * 1024.0;
const PER_H: usize = 60;
const PERIOD: f64 = 524_288.0;

/// One segment of `hours` from `start`, with `f(t since start, gen)`.
pub fn run(
    start: f64,
    hours: f64,
    g: &mut Gen,
    mut f: impl FnMut(f64, &mut Gen) -> f64,
) -> Vec<Pt> {
    let n = (hours * PER_H as f64) as usize;
    (0..n)
        .map(|i| {
            let dt = i as f64 / PER_H as f64;
            (start + dt, f(dt, g).max(0.0))
        })
        .collect()
}

pub fn single(segment: Vec<Pt>) -> Generated {
    Generated {
        segments: vec![segment],
        sites: HashMap::new(),
        leaking_site: None,
        special_site: None,
        exhaustion_defined: true,
        peers: Vec::new(),
    }
}

fn restarting(
    total_h: f64,
    every_h: f64,
    g: &mut Gen,
    f: impl Fn(f64, &mut Gen) -> f64,
) -> Generated {
    let mut segments = Vec::new();
    let mut t = 0.0;
    while t < total_h {
        segments.push(run(t, every_h.min(total_h - t), g, &f));
        t += every_h;
    }
    Generated {
        segments,
        sites: HashMap::new(),
        leaking_site: None,
        special_site: None,
        exhaustion_defined: false,
        peers: Vec::new(),
    }
}

fn sawtooth(dt: f64, period_h: f64) -> f64 {
    (dt / period_h).fract()
}

/// 200 allocation sites with churn; `special` decides the one that grows.
fn sites(g: &mut Gen, hours: f64, special: impl Fn(f64) -> f64, leak: bool) -> Generated {
    let n = (hours * PER_H as f64) as usize;
    let base: Vec<f64> = (0..200)
        .map(|_| MIB * 0.05 * g.pareto(1.2).min(400.0))
        .collect();
    let special_id = 1 + (g.uniform() * 200.0) as i64 % 200;
    let mut sites: HashMap<i64, Vec<Pt>> = HashMap::new();
    let mut total = vec![0.0; n];
    for (k, b) in base.iter().enumerate() {
        let id = k as i64 + 1;
        // Churn: each site's true live bytes wander around its base.
        let mut level = *b;
        let pts: Vec<Pt> = (0..n)
            .map(|i| {
                let t = i as f64 / PER_H as f64;
                level = (level + 0.02 * b * g.normal()).clamp(0.5 * b, 1.5 * b);
                let truth = if id == special_id { special(t) } else { level };
                // Sampling noise: variance ~ period * bytes.
                let sampled = (truth + (PERIOD * truth).sqrt() * g.normal()).max(0.0);
                total[i] += truth;
                (t, sampled)
            })
            .collect();
        sites.insert(id, pts);
    }
    let resource: Vec<Pt> = total
        .iter()
        .enumerate()
        .map(|(i, v)| (i as f64 / PER_H as f64, *v))
        .collect();
    Generated {
        segments: vec![resource],
        sites,
        leaking_site: leak.then_some(special_id),
        special_site: Some(special_id),
        exhaustion_defined: true,
        peers: Vec::new(),
    }
}

pub const GIB: f64 = 1024.0 * MIB;

/// Every scenario of the suite.
pub fn all() -> Vec<Scenario> {
    let mut all = leaks_steady();
    all.extend(leaks_irregular());
    all.extend(crate::shapes::leaks());
    all.extend(healthy_shapes());
    all.extend(healthy_sites());
    all.extend(crate::shapes::healthy());
    all.extend(crate::pools::all());
    all
}

fn leaks_steady() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "sawtooth with rising troughs",
            leak: true,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 30.0,
            leak_start_h: 0.0,
            limit: 2.0 * GIB,
            generate: |g| {
                single(run(0.0, 120.0, g, |t, g| {
                    512.0 * MIB
                        + 15.0 * MIB * t
                        + 200.0 * MIB * sawtooth(t, 0.33)
                        + 4.0 * MIB * g.normal()
                }))
            },
        },
        Scenario {
            name: "daily cycle with a small leak",
            leak: true,
            kind: Kind::Resource,
            window_h: 72.0,
            eval_h: 96.0,
            leak_start_h: 0.0,
            limit: 4.0 * GIB,
            generate: |g| {
                single(run(0.0, 480.0, g, |t, g| {
                    1.0 * GIB
                        + 300.0 * MIB * (2.0 * std::f64::consts::PI * t / 24.0).sin()
                        + 8.0 * MIB * t
                        + 10.0 * MIB * g.normal()
                }))
            },
        },
        Scenario {
            name: "leak that starts after a deploy",
            leak: true,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 30.0,
            leak_start_h: 12.0,
            limit: 2.0 * GIB,
            generate: |g| {
                let before = run(0.0, 12.0, g, |_, g| 600.0 * MIB + 8.0 * MIB * g.normal());
                let after = run(12.0, 120.0, g, |t, g| {
                    600.0 * MIB + 20.0 * MIB * t + 8.0 * MIB * g.normal()
                });
                Generated {
                    segments: vec![before, after],
                    ..single(Vec::new())
                }
            },
        },
    ]
}

fn leaks_irregular() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "leak with restarts every 6 h",
            leak: true,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 33.0,
            leak_start_h: 0.0,
            limit: 4.0 * GIB,
            generate: |g| {
                restarting(72.0, 6.0, g, |t, g| {
                    400.0 * MIB + 40.0 * MIB * t + 8.0 * MIB * g.normal()
                })
            },
        },
        Scenario {
            name: "fd leak amid churn",
            leak: true,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 30.0,
            leak_start_h: 0.0,
            limit: 1024.0,
            generate: |g| {
                single(run(0.0, 240.0, g, |t, g| {
                    (120.0 + 4.0 * t + (30.0 + 12.0 * g.normal()).max(0.0) * g.uniform()).round()
                }))
            },
        },
        Scenario {
            name: "thread leak",
            leak: true,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 30.0,
            leak_start_h: 0.0,
            limit: 512.0,
            generate: |g| {
                single(run(0.0, 400.0, g, |t, g| {
                    (24.0 + 1.5 * t + (3.0 * g.uniform()).floor()).round()
                }))
            },
        },
        Scenario {
            name: "one leaking site among 200",
            leak: true,
            kind: Kind::Sites,
            window_h: 24.0,
            eval_h: 24.0,
            leak_start_h: 0.0,
            limit: 8.0 * GIB,
            generate: |g| sites(g, 24.0, |t| 4.0 * MIB + 6.0 * MIB * t, true),
        },
    ]
}

fn healthy_shapes() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "cache warm-up, exponential",
            leak: false,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 24.0,
            leak_start_h: 0.0,
            limit: 2.0 * GIB,
            generate: |g| {
                single(run(0.0, 24.0, g, |t, g| {
                    300.0 * MIB + 800.0 * MIB * (1.0 - (-t / 3.0).exp()) + 6.0 * MIB * g.normal()
                }))
            },
        },
        Scenario {
            name: "cache warm-up, linear to a cap",
            leak: false,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 24.0,
            leak_start_h: 0.0,
            limit: 2.0 * GIB,
            generate: |g| {
                single(run(0.0, 24.0, g, |t, g| {
                    300.0 * MIB + (100.0 * MIB * t).min(800.0 * MIB) + 6.0 * MIB * g.normal()
                }))
            },
        },
        Scenario {
            name: "step at a deploy",
            leak: false,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 24.0,
            leak_start_h: 0.0,
            limit: 2.0 * GIB,
            generate: |g| {
                single(run(0.0, 24.0, g, |t, g| {
                    let step = if t >= 14.0 { 300.0 * MIB } else { 0.0 };
                    600.0 * MIB + step + 8.0 * MIB * g.normal()
                }))
            },
        },
        Scenario {
            name: "restarts without a leak",
            leak: false,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 24.0,
            leak_start_h: 0.0,
            limit: 2.0 * GIB,
            generate: |g| {
                restarting(24.0, 6.0, g, |t, g| {
                    500.0 * MIB * (1.0 - (-t * 6.0).exp()) + 100.0 * MIB + 6.0 * MIB * g.normal()
                })
            },
        },
    ]
}

fn healthy_sites() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "heavy-tailed spikes",
            leak: false,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 24.0,
            leak_start_h: 0.0,
            limit: 4.0 * GIB,
            generate: |g| {
                single(run(0.0, 24.0, g, |_, g| {
                    600.0 * MIB
                        + 4.0 * MIB * g.normal()
                        + 20.0 * MIB * (g.pareto(1.1) - 1.0).min(100.0)
                }))
            },
        },
        Scenario {
            name: "connection pool filling to its size",
            leak: false,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 24.0,
            leak_start_h: 0.0,
            limit: 1024.0,
            generate: |g| {
                single(run(0.0, 24.0, g, |t, g| {
                    (40.0 + (64.0 * t / 3.0).min(64.0) + (6.0 * g.uniform()).floor()).round()
                }))
            },
        },
        Scenario {
            name: "thread pool tracking load",
            leak: false,
            kind: Kind::Resource,
            window_h: 24.0,
            eval_h: 24.0,
            leak_start_h: 0.0,
            limit: 512.0,
            generate: |g| {
                single(run(0.0, 24.0, g, |t, g| {
                    // Busy for 3 h, idle for 3 h: the pool grows, then its
                    // idle threads time out.
                    let busy = (t / 3.0).floor() as i64 % 2 == 0;
                    let phase = (t / 3.0).fract() * 3.0;
                    let size = if busy {
                        8.0 + 40.0 * (phase / 1.5).min(1.0)
                    } else {
                        8.0 + 40.0 * (-phase * 4.0).exp()
                    };
                    (size + (2.0 * g.uniform()).floor()).round()
                }))
            },
        },
        Scenario {
            name: "a cache site among 200",
            leak: false,
            kind: Kind::Sites,
            window_h: 24.0,
            eval_h: 24.0,
            leak_start_h: 0.0,
            limit: 8.0 * GIB,
            generate: |g| {
                sites(
                    g,
                    24.0,
                    |t| 4.0 * MIB + 150.0 * MIB * (1.0 - (-t / 2.0).exp()),
                    false,
                )
            },
        },
    ]
}

impl Scenario {
    pub fn generate(&self, seed: u64) -> Generated {
        (self.generate)(&mut Gen::new(seed))
    }
}
