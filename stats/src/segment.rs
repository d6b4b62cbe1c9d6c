//! Change points in slope and in level: the optimal partition of a short
//! series into straight pieces, each with its own level and slope.
//!
//! The search is exact optimal partitioning (Jackson et al., 2005), the
//! search that PELT prunes; over the at most ~100 bucket floors the recipe
//! feeds it, the unpruned O(m²) search costs microseconds, so no pruning is
//! needed. Each piece costs the squared error of its least-squares line
//! plus a penalty, so a piece is added only when it explains more than
//! noise would. Written here: the change-point crates on crates.io fit
//! piecewise constants (mean shifts) only, and a line per piece is what
//! tells a slope change from a step.

use crate::Pt;

/// One straight piece: points `start..end` of the series, on the line
/// `intercept + slope * t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Piece {
    pub start: usize,
    pub end: usize,
    pub slope: f64,
    pub intercept: f64,
}

impl Piece {
    pub fn at(&self, t: f64) -> f64 {
        self.intercept + self.slope * t
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Prefix sums for the least-squares line of any range in O(1).
struct Sums {
    n: Vec<f64>,
    t: Vec<f64>,
    v: Vec<f64>,
    tt: Vec<f64>,
    tv: Vec<f64>,
    vv: Vec<f64>,
    /// Times are taken from the first point, for precision.
    t0: f64,
}

impl Sums {
    fn new(pts: &[Pt]) -> Sums {
        let t0 = pts.first().map_or(0.0, |p| p.0);
        let mut s = Sums {
            n: vec![0.0],
            t: vec![0.0],
            v: vec![0.0],
            tt: vec![0.0],
            tv: vec![0.0],
            vv: vec![0.0],
            t0,
        };
        for (t, v) in pts {
            let t = t - t0;
            let k = s.n.len() - 1;
            s.n.push(s.n[k] + 1.0);
            s.t.push(s.t[k] + t);
            s.v.push(s.v[k] + v);
            s.tt.push(s.tt[k] + t * t);
            s.tv.push(s.tv[k] + t * v);
            s.vv.push(s.vv[k] + v * v);
        }
        s
    }

    /// Slope, intercept (in the original time) and squared error of the
    /// line through points `i..j`.
    fn line(&self, i: usize, j: usize) -> (f64, f64, f64) {
        let d = |a: &[f64]| a[j] - a[i];
        let (n, st, sv, stt, stv, svv) = (
            d(&self.n),
            d(&self.t),
            d(&self.v),
            d(&self.tt),
            d(&self.tv),
            d(&self.vv),
        );
        let var_t = stt - st * st / n;
        let cov = stv - st * sv / n;
        let slope = if var_t > 1e-12 { cov / var_t } else { 0.0 };
        let mean_v = sv / n;
        let mean_t = st / n;
        let a = mean_v - slope * mean_t;
        let sse = (svv - sv * sv / n - slope * cov).max(0.0);
        (slope, a - slope * self.t0, sse)
    }
}

/// The partition of `pts` (sorted by time) into pieces of at least
/// `min_len` points that minimises squared error plus `penalty` per piece.
/// Fewer than `2 * min_len` points make one piece.
pub fn segments(pts: &[Pt], min_len: usize, penalty: f64) -> Vec<Piece> {
    let m = pts.len();
    let min_len = min_len.max(2);
    let sums = Sums::new(pts);
    let piece = |i: usize, j: usize| {
        let (slope, intercept, _) = sums.line(i, j);
        Piece {
            start: i,
            end: j,
            slope,
            intercept,
        }
    };
    if m < 2 * min_len {
        return if m == 0 {
            Vec::new()
        } else {
            vec![piece(0, m)]
        };
    }
    // best[j]: the least cost of pts[..j]; from[j]: where its last piece
    // starts.
    let mut best = vec![f64::INFINITY; m + 1];
    let mut from = vec![0usize; m + 1];
    best[0] = 0.0;
    for j in min_len..=m {
        for i in (0..=j - min_len).filter(|i| *i == 0 || *i >= min_len) {
            if !best[i].is_finite() {
                continue;
            }
            let cost = best[i] + sums.line(i, j).2 + penalty;
            if cost < best[j] {
                best[j] = cost;
                from[j] = i;
            }
        }
    }
    let mut out = Vec::new();
    let mut j = m;
    while j > 0 {
        let i = from[j];
        out.push(piece(i, j));
        j = i;
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wobble(i: usize) -> f64 {
        [0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1][i % 7]
    }

    #[test]
    fn a_slope_change_is_found_where_it_is() {
        let pts: Vec<Pt> = (0..60)
            .map(|i| {
                let t = i as f64;
                (
                    t,
                    if t < 30.0 {
                        10.0
                    } else {
                        10.0 + 2.0 * (t - 30.0)
                    } + wobble(i),
                )
            })
            .collect();
        let p = segments(&pts, 4, 10.0);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!((p[1].start as i64 - 30).abs() <= 1, "{p:?}");
        assert!((p[1].slope - 2.0).abs() < 0.1, "{p:?}");
        assert!(p[0].slope.abs() < 0.1, "{p:?}");
    }

    #[test]
    fn steps_are_found_and_a_straight_line_is_one_piece() {
        let stairs: Vec<Pt> = (0..60)
            .map(|i| (i as f64, 100.0 * (i / 15) as f64 + wobble(i)))
            .collect();
        let p = segments(&stairs, 4, 10.0);
        let starts: Vec<usize> = p.iter().map(|p| p.start).collect();
        assert_eq!(starts, vec![0, 15, 30, 45]);
        let line: Vec<Pt> = (0..60)
            .map(|i| (i as f64, 3.0 * i as f64 + wobble(i)))
            .collect();
        assert_eq!(segments(&line, 4, 10.0).len(), 1);
    }

    #[test]
    fn short_series_are_one_piece() {
        let pts: Vec<Pt> = (0..5).map(|i| (i as f64, i as f64)).collect();
        assert_eq!(segments(&pts, 4, 1.0).len(), 1);
        assert!(segments(&[], 4, 1.0).is_empty());
    }
}
