#![doc = include_str!("../README.md")]

pub mod pages;
pub mod svg;

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

/// The unit of a chart's values, for its axis labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Count,
    Millis,
}

/// How an instance is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Healthy,
    Leaking,
    /// A leak that reaches its limit within a day.
    ExhaustingSoon,
    /// Not heard from lately.
    Stale,
}

/// One row of the overview.
#[derive(Debug, Clone)]
pub struct InstanceSummary {
    pub service: String,
    pub instance: String,
    pub status: Status,
    /// Soonest time to exhaustion among its leaks, and of what.
    pub exhaustion: Option<(String, f64)>,
    pub last_seen_ms: i64,
    pub heap: Vec<(i64, f64)>,
    pub fds: Vec<(i64, f64)>,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone)]
pub struct Chart {
    /// Stable id, used by tests and links: `heap`, `rss`, `fds`, ...
    pub id: String,
    pub title: String,
    pub unit: Unit,
    pub series: Vec<Series>,
    pub limit: Option<(String, f64)>,
    /// The projected path to exhaustion, drawn ahead of now.
    pub projection: Option<Vec<(i64, f64)>>,
    /// Single events, drawn as dots: pauses on the pause timeline.
    pub events: Vec<(i64, f64)>,
}

#[derive(Debug, Clone)]
pub struct PauseView {
    pub start_ms: i64,
    pub duration_ms: f64,
    pub source: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct FindingView {
    pub resource: String,
    /// One line: rate, confidence, time to exhaustion.
    pub summary: String,
    /// Each site: its share and rate, then its frames, leaf first, with
    /// the code to look at marked.
    pub sites: Vec<(String, Vec<String>)>,
}

/// Everything the instance page shows.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub service: String,
    pub instance: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub restarts: Vec<i64>,
    pub charts: Vec<Chart>,
    pub pauses: Vec<PauseView>,
    pub findings: Vec<FindingView>,
    /// Times of the heap profiles in the window.
    pub profiles: Vec<i64>,
}

/// Where the pages get their data: implemented by the analyzer over its
/// store and engine, so the UI and the CLI share one analysis path.
pub trait DataSource: Send + Sync + 'static {
    fn overview(&self) -> Result<Vec<InstanceSummary>, String>;
    /// `None` when the service or instance is unknown.
    fn instance(
        &self,
        service: &str,
        instance: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<InstanceView>, String>;
    /// Folded stacks of the profile nearest `at_ms`, with its time.
    fn folded(
        &self,
        service: &str,
        instance: &str,
        at_ms: i64,
        objects: bool,
    ) -> Result<Option<(i64, String)>, String>;
    fn now_ms(&self) -> i64;
}

type Source = Arc<dyn DataSource>;

/// The UI's routes: `/`, `/ui/instance`, `/ui/flame` and the flamegraph
/// SVGs. Every asset is inline; nothing is fetched from elsewhere.
pub fn router(source: Source) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/favicon.ico", get(favicon))
        .route("/ui/instance", get(instance))
        .route("/ui/flame", get(flame_page))
        .route("/ui/flame.svg", get(flame_svg))
        .with_state(source)
}

#[derive(Debug, Deserialize)]
struct Params {
    service: Option<String>,
    instance: Option<String>,
    window: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    at: Option<i64>,
    /// `bytes` (default) or `objects`.
    value: Option<String>,
    /// `live` (default) or `growth`.
    kind: Option<String>,
}

/// An error page: a status, a title and a sentence that says what is wrong.
struct PageError(StatusCode, &'static str, String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        page_error(self.0, self.1, &self.2)
    }
}

fn page_error(status: StatusCode, title: &str, message: &str) -> Response {
    (status, Html(pages::message(title, message))).into_response()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, PageError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(PageError(StatusCode::INTERNAL_SERVER_ERROR, "error", e)),
        Err(_) => Err(PageError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error",
            "the request failed".into(),
        )),
    }
}

async fn favicon() -> Response {
    let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\"><rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#0f172a\"/><path d=\"M2 12 L6 9 L9 10 L14 4\" stroke=\"#38bdf8\" stroke-width=\"2\" fill=\"none\"/></svg>";
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

async fn overview(State(src): State<Source>) -> Response {
    let s = src.clone();
    match blocking(move || s.overview()).await {
        Ok(rows) => Html(pages::overview(&rows, src.now_ms())).into_response(),
        Err(r) => r.into_response(),
    }
}

/// Resolves `window` (`1h`, `6h`, `24h`, `7d`) or `from`/`to`.
fn window(p: &Params, now: i64) -> Result<(i64, i64, String), PageError> {
    if let (Some(f), Some(t)) = (p.from, p.to) {
        if f >= t {
            return Err(PageError(
                StatusCode::BAD_REQUEST,
                "bad window",
                "from must be before to".into(),
            ));
        }
        return Ok((f, t, "custom".into()));
    }
    // Without a window, the last hour, narrowed to the data when the
    // instance is younger than that.
    let w = p.window.clone().unwrap_or_else(|| "auto".into());
    let ms = match w.as_str() {
        "1h" | "auto" => 3_600_000,
        "6h" => 6 * 3_600_000,
        "24h" => 24 * 3_600_000,
        "7d" => 7 * 24 * 3_600_000,
        other => {
            return Err(PageError(
                StatusCode::BAD_REQUEST,
                "bad window",
                format!("unknown window {other:?}: use 1h, 6h, 24h, 7d, or from and to"),
            ))
        }
    };
    Ok((now - ms, now, w))
}

fn required(v: &Option<String>, name: &str) -> Result<String, PageError> {
    v.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
        PageError(
            StatusCode::BAD_REQUEST,
            "missing parameter",
            format!("the {name} parameter is required"),
        )
    })
}

async fn instance(State(src): State<Source>, Query(p): Query<Params>) -> Response {
    let (service, inst) = match (
        required(&p.service, "service"),
        required(&p.instance, "instance"),
    ) {
        (Ok(s), Ok(i)) => (s, i),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let (from, to, label) = match window(&p, src.now_ms()) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    let s = src.clone();
    let (sv, iv) = (service.clone(), inst.clone());
    match blocking(move || s.instance(&sv, &iv, from, to)).await {
        Ok(Some(mut view)) => {
            if label == "auto" {
                let first = view
                    .charts
                    .iter()
                    .flat_map(|c| {
                        c.series
                            .iter()
                            .filter_map(|s| s.points.first().map(|p| p.0))
                    })
                    .min();
                if let Some(first) = first {
                    let margin = (view.to_ms - first) / 50;
                    view.from_ms = view.from_ms.max(first - margin);
                }
            }
            Html(pages::instance(&view, &label)).into_response()
        }
        Ok(None) => page_error(
            StatusCode::NOT_FOUND,
            "unknown instance",
            &format!(
                "heaptide has no data for {service}/{inst}. Is its agent sending to this analyzer?"
            ),
        ),
        Err(r) => r.into_response(),
    }
}

async fn flame_page(Query(p): Query<Params>) -> Response {
    let (service, inst) = match (
        required(&p.service, "service"),
        required(&p.instance, "instance"),
    ) {
        (Ok(s), Ok(i)) => (s, i),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    Html(pages::flame(
        &service,
        &inst,
        &p.kind.clone().unwrap_or_else(|| "live".into()),
        p.at,
        p.from,
        p.to,
        p.value.as_deref() == Some("objects"),
    ))
    .into_response()
}

async fn flame_svg(State(src): State<Source>, Query(p): Query<Params>) -> Response {
    let (service, inst) = match (
        required(&p.service, "service"),
        required(&p.instance, "instance"),
    ) {
        (Ok(s), Ok(i)) => (s, i),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let objects = p.value.as_deref() == Some("objects");
    let growth = p.kind.as_deref() == Some("growth");
    let now = src.now_ms();
    let s = src.clone();
    let result = blocking(move || {
        if growth {
            let to = p.to.unwrap_or(now);
            let from = p.from.unwrap_or(to - 3_600_000);
            let before = s.folded(&service, &inst, from, objects)?;
            let after = s.folded(&service, &inst, to, objects)?;
            match (before, after) {
                (Some((t0, b)), Some((t1, a))) => {
                    let title = format!(
                        "{service}/{inst}: growth of live {} between two profiles",
                        if objects { "objects" } else { "bytes" }
                    );
                    pages::differential_svg(&b, &a, &title, t0, t1, objects).map(Some)
                }
                _ => Ok(None),
            }
        } else {
            match s.folded(&service, &inst, p.at.unwrap_or(now), objects)? {
                Some((t, folded)) => {
                    pages::flame_svg(&folded, &service, &inst, t, objects).map(Some)
                }
                None => Ok(None),
            }
        }
    })
    .await;
    match result {
        Ok(Some(svg)) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "image/svg+xml")],
            pages::empty_svg("no heap profile for this instance in this window"),
        )
            .into_response(),
        Err(r) => r.into_response(),
    }
}
