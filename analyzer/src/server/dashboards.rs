//! The dashboards' routes: `/`, `/ui/service`, `/ui/instance`,
//! `/ui/flame` and the flamegraph SVGs. View models come from [`crate::read::views`]; `heaptide-ui`
//! draws them. Every asset is inline; nothing is fetched from elsewhere.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, MethodRouter};

use super::error::{blocking, ApiError, PageError};
use super::params::Params;
use super::AppState;
use crate::read::views;
use crate::select::now_ms;
use heaptide_ui::pages;

type PageResult = Result<Response, PageError>;

/// The read routes: each path and its `GET` handler.
pub fn routes() -> Vec<(&'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        ("/", get(overview)),
        ("/ui/instance", get(instance)),
        ("/ui/service", get(service)),
        ("/ui/flame", get(flame_page)),
        ("/ui/flame.svg", get(flame_svg)),
    ]
}

pub(super) async fn favicon() -> Response {
    let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\"><rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#0f172a\"/><path d=\"M2 12 L6 9 L9 10 L14 4\" stroke=\"#38bdf8\" stroke-width=\"2\" fill=\"none\"/></svg>";
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

async fn overview(State(state): State<Arc<AppState>>) -> PageResult {
    let store = state.store.clone();
    let rows = blocking(move || views::overview(&*store)).await?;
    let failed = state
        .telemetry
        .webhooks
        .lock()
        .map(|h| h.iter().map(|(_, s)| s.undelivered()).sum())
        .unwrap_or(0);
    Ok(Html(pages::overview(&rows, now_ms(), failed)).into_response())
}

async fn service(State(state): State<Arc<AppState>>, Query(p): Query<Params>) -> PageResult {
    let sel = p
        .service_selector(Duration::from_secs(3600))
        .map_err(ApiError::page)?;
    let name = sel.service.clone().unwrap_or_default();
    let label = p.label.clone().filter(|l| !l.is_empty());
    let store = state.store.clone();
    let found =
        blocking(move || crate::read::service_page::service(&*store, &sel, label.as_deref()))
            .await
            .map_err(ApiError::page)?;
    let Some(mut view) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "heaptide has no data for service {name}. Is its agent sending to this analyzer?"
            ),
        )
        .page());
    };
    if range_label(&p) == "auto" {
        view.from_ms = narrowed(&view.charts, view.from_ms, view.to_ms);
    }
    Ok(Html(heaptide_ui::service::service(&view, now_ms())).into_response())
}

/// Without a range, a page shows the last hour, narrowed to the data when
/// the instances are younger than that.
fn narrowed(charts: &[heaptide_ui::Chart], from_ms: i64, to_ms: i64) -> i64 {
    let first = charts
        .iter()
        .flat_map(|c| {
            c.series
                .iter()
                .filter_map(|s| s.points.first().map(|p| p.0))
        })
        .min();
    first.map_or(from_ms, |first| from_ms.max(first - (to_ms - first) / 50))
}

/// The range the page names for its navigation: `1h`, `custom`, `auto`.
fn range_label(p: &Params) -> String {
    if p.from.is_some() {
        "custom".into()
    } else {
        p.since.clone().unwrap_or_else(|| "auto".into())
    }
}

async fn instance(State(state): State<Arc<AppState>>, Query(p): Query<Params>) -> PageResult {
    let (service, inst) = p.instance_key()?;
    let sel = p.selector(Duration::from_secs(3600))?;
    let label = range_label(&p);
    let store = state.store.clone();
    let found = blocking(move || views::instance(&*store, &sel)).await?;
    let Some(mut view) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "heaptide has no data for {service}/{inst}. Is its agent sending to this analyzer?"
            ),
        )
        .page());
    };
    if label == "auto" {
        view.from_ms = narrowed(&view.charts, view.from_ms, view.to_ms);
    }
    Ok(Html(pages::instance(&view, &label)).into_response())
}

/// The flamegraph's scope from the query: one instance, or the service's
/// instances merged, with or without a label filter.
fn scope(p: &Params) -> Result<heaptide_ui::flame::FlameScope, ApiError> {
    let service = p.required(&p.service, "service")?.to_owned();
    for (field, v) in [("label", &p.label), ("base", &p.base)] {
        if let Some(v) = v {
            crate::read::flames::parse_label(field, v)?;
        }
    }
    Ok(heaptide_ui::flame::FlameScope {
        service,
        instance: p.instance.clone().filter(|i| !i.is_empty()),
        label: p.label.clone().filter(|l| !l.is_empty()),
        base: p.base.clone().filter(|l| !l.is_empty()),
        kind: p.kind.clone().unwrap_or_else(|| "live".into()),
        at: p.at,
        from: p.from,
        to: p.to,
        objects: p.objects(),
        older: p.older,
        all_frames: p.all_frames()?,
    })
}

async fn flame_page(Query(p): Query<Params>) -> PageResult {
    let scope = scope(&p).map_err(ApiError::page)?;
    Ok(Html(heaptide_ui::flame::flame(&scope)).into_response())
}

async fn flame_svg(State(state): State<Arc<AppState>>, Query(p): Query<Params>) -> PageResult {
    let scope = scope(&p).map_err(ApiError::page)?;
    let store = state.store.clone();
    let svg = blocking(move || crate::read::flames::svg(&*store, &scope, now_ms()))
        .await
        .map_err(ApiError::page)?;
    match svg {
        Some(svg) => Ok((
            [
                (header::CONTENT_TYPE, "image/svg+xml".to_owned()),
                (
                    header::CONTENT_SECURITY_POLICY,
                    super::headers::svg_policy(&svg),
                ),
            ],
            svg,
        )
            .into_response()),
        None => Ok((
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "image/svg+xml")],
            heaptide_ui::flame::empty_svg("no heap profile for these instances in this window"),
        )
            .into_response()),
    }
}
