//! The dashboards' routes: `/`, `/ui/instance`, `/ui/flame` and the
//! flamegraph SVGs. View models come from [`crate::views`]; `heaptide-ui`
//! draws them. Every asset is inline; nothing is fetched from elsewhere.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error::{blocking, ApiError, PageError};
use super::params::Params;
use super::AppState;
use crate::select::now_ms;
use crate::views;
use heaptide_ui::pages;

type PageResult = Result<Response, PageError>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(overview))
        .route("/favicon.ico", get(favicon))
        .route("/ui/instance", get(instance))
        .route("/ui/flame", get(flame_page))
        .route("/ui/flame.svg", get(flame_svg))
}

async fn favicon() -> Response {
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
        // Without a range, the last hour, narrowed to the data when the
        // instance is younger than that.
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
    Ok(Html(pages::instance(&view, &label)).into_response())
}

async fn flame_page(Query(p): Query<Params>) -> PageResult {
    let (service, inst) = p.instance_key()?;
    Ok(Html(pages::flame(
        &service,
        &inst,
        p.kind.as_deref().unwrap_or("live"),
        p.at,
        p.from,
        p.to,
        p.objects(),
    ))
    .into_response())
}

async fn flame_svg(State(state): State<Arc<AppState>>, Query(p): Query<Params>) -> PageResult {
    let (service, inst) = p.instance_key()?;
    let objects = p.objects();
    let growth = p.kind.as_deref() == Some("growth");
    let now = now_ms();
    let store = state.store.clone();
    let svg = blocking(move || {
        let s = &*store;
        if growth {
            let to = p.to.unwrap_or(now);
            let from = p.from.unwrap_or(to - 3_600_000);
            let before = views::folded(s, &service, &inst, from, objects)?;
            let after = views::folded(s, &service, &inst, to, objects)?;
            let (Some((t0, b)), Some((t1, a))) = (before, after) else {
                return Ok(None);
            };
            let title = format!(
                "{service}/{inst}: growth of live {} between two profiles",
                if objects { "objects" } else { "bytes" }
            );
            Ok(Some(pages::differential_svg(
                &b, &a, &title, t0, t1, objects,
            )))
        } else {
            let Some((t, folded)) =
                views::folded(s, &service, &inst, p.at.unwrap_or(now), objects)?
            else {
                return Ok(None);
            };
            Ok(Some(pages::flame_svg(&folded, &service, &inst, t, objects)))
        }
    })
    .await?;
    match svg {
        Some(Ok(svg)) => Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()),
        Some(Err(e)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).page()),
        None => Ok((
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "image/svg+xml")],
            pages::empty_svg("no heap profile for this instance in this window"),
        )
            .into_response()),
    }
}
