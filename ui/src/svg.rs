//! Charts drawn as SVG on the server: axes with units, series, the limit,
//! restarts, deploys and alerts, and the projected path to exhaustion.

use std::fmt::Write;

use crate::{Chart, Mark, MarkKind, Unit};

const W: f64 = 760.0;
const H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 30.0;
const COLORS: [&str; 8] = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#64748b",
];

fn clock(ms: i64, span_ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (h, m) = (secs.rem_euclid(86_400) / 3600, secs.rem_euclid(3600) / 60);
    if span_ms > 3 * 86_400_000 {
        let (_, mo, d) = crate::format::civil(secs.div_euclid(86_400));
        format!("{mo:02}-{d:02}")
    } else if span_ms < 600_000 {
        format!("{h:02}:{m:02}:{:02}", secs.rem_euclid(60))
    } else {
        format!("{h:02}:{m:02}")
    }
}

/// "Nice" tick steps: 1, 2 or 5 times a power of ten (of 1024 for bytes).
fn ticks(lo: f64, hi: f64, unit: Unit) -> Vec<f64> {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let base: f64 = if unit == Unit::Bytes && span >= 1024.0 {
        1024.0
    } else {
        10.0
    };
    let raw = span / 4.0;
    let mag = base.powf(raw.log(base).floor());
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(raw);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 12 {
        out.push(t);
        t += step;
    }
    out
}

/// Reduces a series to at most two points per pixel column (min and max),
/// so a week of 10 s samples draws as fast as an hour.
fn decimate(points: &[(i64, f64)], from: i64, to: i64, columns: usize) -> Vec<(i64, f64)> {
    if points.len() <= columns * 2 {
        return points.to_vec();
    }
    let width = ((to - from) as f64 / columns as f64).max(1.0);
    let mut out = Vec::with_capacity(columns * 2);
    let mut i = 0;
    while i < points.len() {
        let col = ((points[i].0 - from) as f64 / width).floor();
        let mut lo = points[i];
        let mut hi = points[i];
        let mut j = i;
        while j < points.len() && ((points[j].0 - from) as f64 / width).floor() == col {
            if points[j].1 < lo.1 {
                lo = points[j];
            }
            if points[j].1 > hi.1 {
                hi = points[j];
            }
            j += 1;
        }
        if lo.0 <= hi.0 {
            out.extend([lo, hi]);
        } else {
            out.extend([hi, lo]);
        }
        i = j;
    }
    out
}

/// Escapes text for HTML, SVG and XML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where a chart's values land: the time span across, the value span up.
struct Plot {
    from: i64,
    to: i64,
    lo: f64,
    hi: f64,
}

impl Plot {
    const PW: f64 = W - LEFT - RIGHT;
    const PH: f64 = H - TOP - BOTTOM;

    fn x(&self, t: i64) -> f64 {
        LEFT + (t - self.from) as f64 / (self.to - self.from).max(1) as f64 * Self::PW
    }

    fn y(&self, v: f64) -> f64 {
        TOP + Self::PH - (v - self.lo) / (self.hi - self.lo) * Self::PH
    }

    fn path(&self, pts: &[(i64, f64)]) -> String {
        pts.iter()
            .map(|(t, v)| format!("{:.1},{:.1}", self.x(*t), self.y(*v)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A full chart. `to` may lie beyond now, to leave room for a projection.
pub fn chart(c: &Chart, from: i64, to: i64, marks: &[Mark]) -> String {
    let mut s = String::new();
    // The plot's time span and area, for the page script's hover and zoom.
    let _ = write!(
        s,
        r#"<svg class="chart" data-chart="{}" data-from="{from}" data-to="{to}" data-x0="{LEFT}" data-x1="{}" data-y0="{TOP}" data-y1="{}" data-unit="{}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        esc(&c.id),
        W - RIGHT,
        TOP + Plot::PH,
        c.unit.as_str(),
        esc(&c.title)
    );
    let _ = write!(
        s,
        r#"<text class="title" x="{LEFT}" y="18">{}</text>"#,
        esc(&c.title)
    );
    let values = c.series.iter().flat_map(|x| x.points.iter().map(|p| p.1));
    // The projection is drawn only as far as the chart reaches.
    let projection = c.projection.as_deref().map(|p| clip(p, to));
    let proj = projection.iter().flat_map(|p| p.iter().map(|x| x.1));
    let proj = proj.chain(c.events.iter().map(|e| e.1));
    let (mut lo, mut hi) = values
        .chain(proj)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        let _ = write!(
            s,
            r#"<text class="empty" x="{}" y="{}">no data in this window</text></svg>"#,
            W / 2.0 - 70.0,
            H / 2.0
        );
        return s;
    }
    // Show the limit when it is near enough to matter.
    let limit_in_view = c.limit.as_ref().filter(|(_, l)| *l <= hi * 1.5 + 1.0);
    if let Some((_, l)) = limit_in_view {
        hi = hi.max(*l);
    }
    lo = lo.min(0.0);
    if hi <= lo {
        hi = lo + 1.0;
    }
    hi += (hi - lo) * 0.05;
    let plot = Plot { from, to, lo, hi };
    axes(&mut s, &plot, c);
    markers(&mut s, &plot, c, marks, limit_in_view);
    data(&mut s, &plot, c, projection.as_deref());
    s.push_str("</svg>");
    s
}

/// Both axes, with units on the ticks.
fn axes(s: &mut String, p: &Plot, c: &Chart) {
    let (from, to) = (p.from, p.to);
    let _ = write!(s, r#"<g class="axis y-axis">"#);
    for t in ticks(p.lo, p.hi, c.unit) {
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            p.y(t),
            p.y(t),
            LEFT - 6.0,
            p.y(t) + 4.0,
            esc(&crate::format::axis(c.unit, t))
        );
    }
    let _ = write!(s, "</g>");
    let _ = write!(s, r#"<g class="axis x-axis">"#);
    for k in 0..=5 {
        let t = from + (to - from) * k / 5;
        // The last label ends at the edge rather than running past it.
        let anchor = if k == 5 { "end" } else { "middle" };
        let _ = write!(
            s,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{}" y2="{}" stroke="#9ca3af"/><text x="{:.1}" y="{}" text-anchor="{anchor}" data-t="{t}">{}</text>"##,
            p.x(t),
            p.x(t),
            TOP + Plot::PH,
            TOP + Plot::PH + 4.0,
            p.x(t),
            H - 10.0,
            clock(t, to - from)
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="#6b7280"/></g>"##,
        W - RIGHT,
        TOP + Plot::PH,
        TOP + Plot::PH
    );
}

/// Restarts, and the limit: a line when in view, a note when off scale.
fn markers(
    s: &mut String,
    p: &Plot,
    c: &Chart,
    marks: &[Mark],
    limit_in_view: Option<&(String, f64)>,
) {
    for m in marks
        .iter()
        .filter(|m| m.at_ms >= p.from && m.at_ms <= p.to)
    {
        let (class, color, dash) = match m.kind {
            MarkKind::Restart => ("restart", "#f59e0b", "4 3"),
            MarkKind::Deploy => ("deploy", "#7c3aed", "8 3"),
            MarkKind::Alert => ("alert-mark", "#dc2626", "2 2"),
        };
        let _ = write!(
            s,
            r##"<line class="{class}" x1="{:.1}" x2="{:.1}" y1="{TOP}" y2="{}" stroke="{color}" stroke-width="1.5" stroke-dasharray="{dash}"><title>{}</title></line>"##,
            p.x(m.at_ms),
            p.x(m.at_ms),
            TOP + Plot::PH,
            esc(&m.label)
        );
    }
    if let Some((label, l)) = limit_in_view {
        let _ = write!(
            s,
            r##"<line class="limit" x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#b91c1c" stroke-dasharray="6 3"/><text class="limit-label" x="{}" y="{:.1}" text-anchor="end" fill="#b91c1c">{} {}</text>"##,
            W - RIGHT,
            p.y(*l),
            p.y(*l),
            W - RIGHT - 4.0,
            p.y(*l) - 4.0,
            esc(label),
            esc(&crate::format::axis(c.unit, *l))
        );
    } else if let Some((label, l)) = &c.limit {
        let _ = write!(
            s,
            r##"<text class="limit-label" x="{}" y="34" text-anchor="end" fill="#b91c1c">{} {} (off scale)</text>"##,
            W - RIGHT,
            esc(label),
            esc(&crate::format::axis(c.unit, *l))
        );
    }
}

/// Where each legend goes: after the title, wrapping to a second row, each
/// name cut to fit, so that long names never run into the next.
fn legend_slots(title: &str, names: &[&str]) -> Vec<(f64, f64, String)> {
    const CHAR: f64 = 6.6;
    const GAP: f64 = 16.0;
    // The title is bold and a size larger: about 7.8 px a character.
    let start = (LEFT + title.chars().count() as f64 * 7.8 + GAP).max(LEFT + 200.0);
    let (mut x, mut y) = (start, 18.0);
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let text = crate::format::truncate(name, 22);
        let w = text.chars().count() as f64 * CHAR + GAP;
        if x + w > W - RIGHT && x > start {
            (x, y) = (start, y + 13.0);
        }
        out.push((x, y, text));
        x += w;
    }
    out
}

/// The series with their legend, the events as dots, and the projection.
/// Each series carries a coarser copy of its points for the page script.
fn data(s: &mut String, p: &Plot, c: &Chart, projection: Option<&[(i64, f64)]>) {
    let names: Vec<&str> = c.series.iter().map(|x| x.name.as_str()).collect();
    for (i, (series, (lx, ly, label))) in c
        .series
        .iter()
        .zip(legend_slots(&c.title, &names))
        .enumerate()
    {
        let color = COLORS[i % COLORS.len()];
        let pts = p.path(&decimate(&series.points, p.from, p.to, Plot::PW as usize));
        let hover: Vec<String> = decimate(&series.points, p.from, p.to, 120)
            .iter()
            .map(|(t, v)| format!("{t},{v:.6e}"))
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="series" data-series="{}" data-points="{}" fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>"#,
            esc(&series.name),
            hover.join(" ")
        );
        let _ = write!(
            s,
            r#"<text class="legend" x="{lx:.1}" y="{ly}" style="fill:{color}"><title>{}</title>{}</text>"#,
            esc(&series.name),
            esc(&label)
        );
    }
    for (t, v) in &c.events {
        let _ = write!(
            s,
            r##"<circle class="event" cx="{:.1}" cy="{:.1}" r="3" fill="#dc2626"><title>{}</title></circle>"##,
            p.x(*t),
            p.y(*v),
            esc(&crate::format::axis(c.unit, *v))
        );
    }
    if let Some(proj) = projection {
        let pts = p.path(proj);
        let _ = write!(
            s,
            r##"<polyline class="projection" fill="none" stroke="#b91c1c" stroke-width="1.5" stroke-dasharray="3 3" points="{pts}"><title>projected path to exhaustion</title></polyline>"##
        );
    }
}

/// The part of a polyline up to time `to`, cut where it crosses `to`.
fn clip(p: &[(i64, f64)], to: i64) -> Vec<(i64, f64)> {
    let mut out = Vec::with_capacity(p.len());
    for (i, pt) in p.iter().enumerate() {
        if pt.0 <= to {
            out.push(*pt);
            continue;
        }
        if let Some(prev) = i.checked_sub(1).map(|k| p[k]) {
            let f = (to - prev.0) as f64 / (pt.0 - prev.0).max(1) as f64;
            out.push((to, prev.1 + (pt.1 - prev.1) * f));
        }
        break;
    }
    out
}

/// A small line without axes, for the overview.
pub fn sparkline(points: &[(i64, f64)]) -> String {
    if points.len() < 2 {
        return r#"<svg class="sparkline" width="120" height="24"></svg>"#.into();
    }
    let (from, to) = (points[0].0, points[points.len() - 1].0);
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let pts: String = decimate(points, from, to, 120)
        .iter()
        .map(|(t, v)| {
            format!(
                "{:.1},{:.1}",
                (t - from) as f64 / (to - from).max(1) as f64 * 118.0 + 1.0,
                22.0 - (v - lo) / span * 20.0
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        r##"<svg class="sparkline" width="120" height="24" viewBox="0 0 120 24"><polyline fill="none" stroke="#2563eb" stroke-width="1.2" points="{pts}"/></svg>"##
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_in_the_unit() {
        assert_eq!(ticks(0.0, 100.0, Unit::Fds), vec![0.0, 50.0, 100.0]);
        let t = ticks(0.0, 8.0 * 1048576.0, Unit::Bytes);
        assert!(t.iter().all(|v| (v / 1048576.0).fract() == 0.0), "{t:?}");
    }

    #[test]
    fn decimation_keeps_extremes() {
        let pts: Vec<(i64, f64)> = (0..10_000)
            .map(|i| (i, if i == 5000 { 99.0 } else { 1.0 }))
            .collect();
        let d = decimate(&pts, 0, 10_000, 100);
        assert!(d.len() <= 200);
        assert!(d.iter().any(|p| p.1 == 99.0));
    }
}
