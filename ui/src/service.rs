//! The service page: its instances with their state, heap and fds per
//! instance on shared axes, its top growing allocation sites, and
//! flamegraphs of all its instances merged, filtered by a label, or one
//! version against another.

use std::fmt::Write;

use crate::pages::{page, url};
use crate::svg::{chart, esc};
use crate::ServiceView;

/// The query naming the service and its label filter, escaped.
fn scope(v: &ServiceView) -> String {
    let mut q = format!("service={}", url(&v.service));
    if let Some(l) = &v.label {
        let _ = write!(q, "&amp;label={}", url(l));
    }
    q
}

pub fn service(v: &ServiceView, now: i64) -> String {
    let q = scope(v);
    let mut b = format!("<h1>{}</h1><nav id=\"labels\">instances: ", esc(&v.service));
    let all = format!("service={}", url(&v.service));
    let _ = write!(
        b,
        "<a href=\"/ui/service?{all}\"{}>all</a>",
        bold(v.label.is_none())
    );
    for l in &v.labels {
        let _ = write!(
            b,
            " · <a class=\"label\" href=\"/ui/service?{all}&amp;label={}\"{}>{}</a>",
            url(l),
            bold(v.label.as_deref() == Some(l)),
            esc(l)
        );
    }
    b.push_str("</nav><nav id=\"windows\">");
    for w in ["1h", "6h", "24h", "7d"] {
        let _ = write!(b, "<a href=\"/ui/service?{q}&amp;since={w}\">{w}</a>");
    }
    let mut hidden = vec![("service", v.service.as_str())];
    if let Some(l) = &v.label {
        hidden.push(("label", l));
    }
    crate::pages::range_form(&mut b, "/ui/service", &hidden, v.from_ms, v.to_ms);
    flame_links(&mut b, v, &q);
    b.push_str(&crate::pages::instance_rows(&v.instances, now));
    b.push_str("<h2>Resources, per instance</h2>");
    for c in &v.charts {
        b.push_str(&chart(c, v.from_ms, v.to_ms, &[]));
    }
    if v.not_drawn > 0 {
        let _ = write!(
            b,
            "<p class=\"empty\">{} more instances are not drawn; filter by a label to see them.</p>",
            v.not_drawn
        );
    }
    sites(&mut b, v, &q);
    page(&v.service, &b)
}

fn bold(on: bool) -> &'static str {
    if on {
        " style=\"font-weight:700\""
    } else {
        ""
    }
}

/// The merged live and growth flamegraphs, and the newest version
/// against the one before.
fn flame_links(b: &mut String, v: &ServiceView, q: &str) {
    let _ = write!(
        b,
        "<p><a id=\"flame-merged\" href=\"/ui/flame?{q}&amp;kind=live\">live heap of these instances, merged</a> · \
         <a id=\"flame-merged-growth\" href=\"/ui/flame?{q}&amp;kind=growth&amp;from={}&amp;to={}\">their growth over the window</a> · \
         <a id=\"flame-merged-alloc\" href=\"/ui/flame?{q}&amp;kind=alloc&amp;from={}&amp;to={}\">their allocations over the window</a>",
        v.from_ms, v.to_ms, v.from_ms, v.to_ms
    );
    if let [.., base, newest] = v.versions.as_slice() {
        let _ = write!(
            b,
            " · <a id=\"flame-compare\" href=\"/ui/flame?service={}&amp;kind=compare&amp;base=version:{}&amp;label=version:{}\">version {} against {}</a>",
            url(&v.service),
            url(base),
            url(newest),
            esc(newest),
            esc(base)
        );
    }
    b.push_str("</p>");
}

/// The top growing allocation sites, each linking to the growth
/// flamegraph of the instances in view.
fn sites(b: &mut String, v: &ServiceView, q: &str) {
    b.push_str("<h2>Top growing allocation sites</h2>");
    if v.sites.is_empty() {
        b.push_str("<p class=\"empty\">No allocation site is growing.</p>");
        return;
    }
    b.push_str(
        "<table id=\"sites\"><tr><th>site</th><th>growth</th><th>instances</th><th></th></tr>",
    );
    for s in &v.sites {
        let _ = write!(
            b,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><a href=\"/ui/flame?{q}&amp;kind=growth&amp;from={}&amp;to={}\">growth flamegraph</a></td></tr>",
            esc(&s.name),
            esc(&s.rate),
            s.instances,
            v.from_ms,
            v.to_ms
        );
    }
    b.push_str("</table>");
}
