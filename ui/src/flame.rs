//! Flamegraph pages and the inferno SVGs: one instance's live heap, the
//! growth between two times, a service's instances merged (all, or those
//! with a label), and one label value against another.

use std::fmt::Write;

use crate::pages::{page, time, url};
use crate::svg::esc;
use crate::Error;

/// Whose heap a flamegraph shows, and which graph.
#[derive(Debug, Clone, Default)]
pub struct FlameScope {
    pub service: String,
    /// One instance, or the service's instances merged.
    pub instance: Option<String>,
    /// Only instances with this label, `key:value`.
    pub label: Option<String>,
    /// For `compare`: the label value the others are set against.
    pub base: Option<String>,
    /// `live`, `old` (live and older than `older`), `alloc` (allocated
    /// between `from` and `to`), `growth` (between `from` and `to`) or
    /// `compare` (`base` against `label`, at `at`).
    pub kind: String,
    pub at: Option<i64>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub objects: bool,
    /// For `old`: the least age shown, in seconds (default ten minutes).
    pub older: Option<u64>,
    /// Every frame, rather than each run of framework frames folded into
    /// one (`frames=all`).
    pub all_frames: bool,
}

/// The ages the `old` view offers, in seconds: the lower edges of the
/// wire's age buckets.
pub const OLDER_CHOICES: [u64; 6] = [10, 60, 600, 3600, 21_600, 86_400];

impl FlameScope {
    /// The least age of the `old` view.
    pub fn older_secs(&self) -> u64 {
        self.older.unwrap_or(600)
    }

    /// `svc/instance`, `svc (all instances)` or `svc where version=2`.
    pub fn who(&self) -> String {
        if self.kind == "compare" {
            // The label values are the comparison itself, named in the title.
            return self.service.clone();
        }
        match (&self.instance, &self.label) {
            (Some(i), _) => format!("{}/{i}", self.service),
            (None, Some(l)) => format!("{} where {}", self.service, l.replacen(':', "=", 1)),
            (None, None) => format!("{} (all instances)", self.service),
        }
    }

    /// The query naming the same scope, HTML-escaped for an attribute.
    fn query(&self, objects: bool) -> String {
        let mut q = format!("service={}", url(&self.service));
        for (k, v) in [
            ("instance", &self.instance),
            ("label", &self.label),
            ("base", &self.base),
        ] {
            if let Some(v) = v {
                let _ = write!(q, "&amp;{k}={}", url(v));
            }
        }
        let _ = write!(
            q,
            "&amp;kind={}&amp;value={}",
            url(&self.kind),
            if objects { "objects" } else { "bytes" }
        );
        for (k, v) in [("at", self.at), ("from", self.from), ("to", self.to)] {
            if let Some(v) = v {
                let _ = write!(q, "&amp;{k}={v}");
            }
        }
        if let Some(o) = self.older {
            let _ = write!(q, "&amp;older={o}");
        }
        if self.all_frames {
            q.push_str("&amp;frames=all");
        }
        q
    }

    /// The page the flamegraph came from.
    fn back(&self) -> String {
        match &self.instance {
            Some(i) => format!(
                "/ui/instance?service={}&amp;instance={}",
                url(&self.service),
                url(i)
            ),
            None => format!("/ui/service?service={}", url(&self.service)),
        }
    }
}

/// The page around a flamegraph: what it shows, links, downloads.
pub fn flame(s: &FlameScope) -> String {
    let title = match s.kind.as_str() {
        "growth" => "growth between two times: the stacks that grew are red".to_owned(),
        "compare" => format!(
            "{} against {}: the stacks larger per instance are red",
            s.label.as_deref().unwrap_or("?").replacen(':', "=", 1),
            s.base.as_deref().unwrap_or("?").replacen(':', "=", 1)
        ),
        "old" => format!(
            "live heap older than {}: memory that stays, where leaks collect",
            crate::format::span(s.older_secs() as f64)
        ),
        "alloc" => "allocations, freed or not: where the allocator's time and churn go".to_owned(),
        _ => "live heap".to_owned(),
    };
    let frames = FlameScope {
        all_frames: !s.all_frames,
        ..s.clone()
    };
    let mut links = format!(
        "<a href=\"{}\">back</a> · click a frame to zoom, Ctrl-F to search · <a href=\"/ui/flame?{}\">{}</a> · <a href=\"/ui/flame?{}\">{}</a>",
        s.back(),
        s.query(!s.objects),
        if s.objects { "in bytes" } else { "in objects" },
        frames.query(s.objects),
        if s.all_frames {
            "fold std, tokio, hyper… frames"
        } else {
            "show every frame (▶ marks the application's frame nearest each allocation)"
        }
    );
    if s.kind == "old" {
        links.push_str(" · older than");
        for o in OLDER_CHOICES {
            let other = FlameScope {
                older: Some(o),
                ..s.clone()
            };
            let _ = write!(
                links,
                " <a href=\"/ui/flame?{}\">{}</a>",
                other.query(false),
                crate::format::span(o as f64)
            );
        }
    }
    if let Some(inst) = &s.instance {
        let at =
            s.to.or(s.at)
                .map(|t| format!("&amp;at={t}"))
                .unwrap_or_default();
        let q = format!("service={}&amp;instance={}{at}", url(&s.service), url(inst));
        let _ = write!(
            links,
            " · download <a href=\"/v1/profile?{q}&amp;format=pprof\">pprof</a> · <a href=\"/v1/profile?{q}&amp;format=folded{}\">folded</a>",
            if s.objects { "-objects" } else { "" }
        );
    }
    let when = match (s.kind.as_str(), s.from, s.to, s.at) {
        ("growth" | "alloc", Some(f), Some(t), _) => {
            format!("<p>from {} to {}</p>", time(f), time(t))
        }
        (_, _, _, Some(at)) => format!("<p>at {}</p>", time(at)),
        _ => String::new(),
    };
    let body = format!(
        "<h1>{}: {}</h1>{when}<p>{links}</p><object id=\"flamegraph\" type=\"image/svg+xml\" data=\"/ui/flame.svg?{}\" width=\"1200\"></object>",
        esc(&s.who()),
        esc(&title),
        s.query(s.objects)
    );
    page(&format!("{} flamegraph", s.who()), &body)
}

fn options<'a>(title: String, subtitle: String, objects: bool) -> inferno::flamegraph::Options<'a> {
    let mut o = inferno::flamegraph::Options::default();
    o.title = title;
    o.subtitle = Some(subtitle);
    o.count_name = if objects {
        "objects".into()
    } else {
        "bytes".into()
    };
    o.colors =
        inferno::flamegraph::color::Palette::Basic(inferno::flamegraph::color::BasicPalette::Mem);
    o.deterministic = true;
    o.min_width = 0.05;
    o
}

fn stamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs.rem_euclid(86_400) / 3600,
        secs.rem_euclid(3600) / 60,
        secs.rem_euclid(60)
    )
}

/// The live-heap flamegraph of `who` (one instance, or several merged).
pub fn flame_svg(folded: &str, who: &str, at: i64, objects: bool) -> Result<String, Error> {
    if folded.trim().is_empty() {
        return Ok(empty_svg("the profile has no sampled allocations"));
    }
    let mut opts = options(
        format!(
            "{who}: live heap ({})",
            if objects { "objects" } else { "bytes" }
        ),
        format!("profile at {}", stamp(at)),
        objects,
    );
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, folded.lines(), &mut out)
        .map_err(|e| Error::Flamegraph(e.to_string()))?;
    String::from_utf8(out).map_err(|e| Error::Flamegraph(e.to_string()))
}

/// A differential flamegraph: the second profile's stacks, coloured by how
/// much each grew (red) or shrank (blue) since the first.
pub fn differential_svg(
    before: &str,
    after: &str,
    title: &str,
    t0: i64,
    t1: i64,
    objects: bool,
) -> Result<String, Error> {
    let mut diff = Vec::new();
    inferno::differential::from_readers(
        Default::default(),
        before.as_bytes(),
        after.as_bytes(),
        &mut diff,
    )
    .map_err(|e| Error::Flamegraph(e.to_string()))?;
    let diff = String::from_utf8(diff).map_err(|e| Error::Flamegraph(e.to_string()))?;
    if diff.trim().is_empty() {
        return Ok(empty_svg("neither profile has sampled allocations"));
    }
    let mut opts = options(
        title.to_owned(),
        format!("from {} to {}", stamp(t0), stamp(t1)),
        objects,
    );
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, diff.lines(), &mut out)
        .map_err(|e| Error::Flamegraph(e.to_string()))?;
    String::from_utf8(out).map_err(|e| Error::Flamegraph(e.to_string()))
}

pub fn empty_svg(message: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"60\"><text x=\"10\" y=\"35\" font-family=\"sans-serif\" font-size=\"14\">{}</text></svg>",
        esc(message)
    )
}
