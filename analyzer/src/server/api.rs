//! The read API (`docs/api.md`): JSON over the store and the engine.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Json;
use serde_json::json;

use super::error::{blocking, ApiError, ApiResult};
use super::params::Params;
use super::AppState;
use crate::error::Error;
use crate::read::query;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The read routes: each path and its `GET` handler.
pub fn routes() -> Vec<(&'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        ("/v1/services", get(services)),
        ("/v1/instances", get(instances)),
        ("/v1/metrics", get(metrics)),
        ("/v1/series", get(series)),
        ("/v1/pauses", get(pauses)),
        ("/v1/profiles", get(profiles)),
        ("/v1/profile", get(profile)),
        ("/v1/profile/diff", get(profile_diff)),
        ("/v1/site", get(site)),
        ("/v1/leaks", get(leaks)),
        ("/v1/predict", get(predict)),
        ("/v1/store", get(store_stats)),
    ]
}

async fn services(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    let store = state.store.clone();
    let out = blocking(move || query::services(&*store, crate::select::now_ms())).await?;
    Ok(Json(json!({ "services": out })).into_response())
}

async fn instances(
    State(state): State<Arc<AppState>>,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    let service = q.required(&q.service, "service")?.to_owned();
    let store = state.store.clone();
    let out = blocking(move || {
        let list = store.instances(Some(&service))?;
        if list.is_empty() {
            return Err(Error::NotFound(format!("service {service:?}")));
        }
        Ok(list)
    })
    .await?;
    Ok(Json(json!({ "instances": out })).into_response())
}

async fn metrics(
    State(state): State<Arc<AppState>>,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    let service = q.required(&q.service, "service")?.to_owned();
    let store = state.store.clone();
    let instance = q.instance.clone();
    let out = blocking(move || store.metric_names(&service, instance.as_deref())).await?;
    Ok(Json(json!({ "metrics": out })).into_response())
}

async fn series(
    State(state): State<Arc<AppState>>,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    let sel = q.service_selector(HOUR)?;
    let metric = q.required(&q.metric, "metric")?.to_owned();
    let store = state.store.clone();
    let (sel2, m2) = (sel.clone(), metric.clone());
    let points = blocking(move || store.series(&sel2, &m2)).await?;
    Ok(Json(json!({
        "service": sel.service, "instance": sel.instance, "metric": metric,
        "from_ms": sel.from_ms, "to_ms": sel.to_ms, "points": points,
    }))
    .into_response())
}

async fn pauses(
    State(state): State<Arc<AppState>>,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    let sel = q.service_selector(HOUR)?;
    let store = state.store.clone();
    let out = blocking(move || query::pauses(&*store, &sel)).await?;
    Ok(Json(out).into_response())
}

async fn profiles(
    State(state): State<Arc<AppState>>,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    let sel = q.service_selector(HOUR)?;
    let store = state.store.clone();
    let out = blocking(move || store.profiles(&sel)).await?;
    Ok(Json(json!({ "profiles": out })).into_response())
}

async fn profile(
    State(state): State<Arc<AppState>>,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    let (service, instance) = q.instance_key()?;
    let at = q.at.unwrap_or_else(crate::select::now_ms);
    let format = q.format.clone().unwrap_or_else(|| "json".into());
    let store = state.store.clone();
    let (info, body) = blocking(move || {
        let info = store
            .profile_nearest(&service, &instance, at)?
            .ok_or_else(|| Error::NotFound(format!("heap profile of {service}/{instance}")))?;
        let body = match format.as_str() {
            "pprof" => query::Rendered::Bytes(query::pprof_bytes(&*store, &info)?),
            "folded" => {
                query::Rendered::Text(query::folded(&*store, info.id, query::Value::Bytes)?)
            }
            "folded-objects" => {
                query::Rendered::Text(query::folded(&*store, info.id, query::Value::Objects)?)
            }
            "json" => query::Rendered::Json(query::profile_json(&*store, &info)?),
            other => {
                return Err(Error::invalid(
                    "format",
                    format!("unknown format {other:?}; use json, pprof, folded or folded-objects"),
                ))
            }
        };
        Ok((info, body))
    })
    .await?;
    Ok(render(
        body,
        &format!("heap-{}-{}", info.instance, info.ts_ms),
    ))
}

async fn profile_diff(
    State(state): State<Arc<AppState>>,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    let (service, instance) = q.instance_key()?;
    let (from, to) = match (q.from, q.to) {
        (Some(f), Some(t)) if f < t => (f, t),
        _ => {
            return Err(ApiError::bad(
                "from",
                "from and to (Unix ms, from < to) are required",
            ))
        }
    };
    let format = q.format.clone().unwrap_or_else(|| "json".into());
    let store = state.store.clone();
    let diff = blocking(move || query::diff(&*store, &service, &instance, from, to)).await?;
    match format.as_str() {
        "json" => Ok(Json(diff).into_response()),
        other => Err(ApiError::bad(
            "format",
            format!("unknown format {other:?}; use json"),
        )),
    }
}

async fn site(State(state): State<Arc<AppState>>, Query(q): Query<Params>) -> ApiResult<Response> {
    let sel = q.service_selector(HOUR)?;
    let stack = q
        .stack
        .ok_or_else(|| ApiError::bad("stack", "query parameter stack is required"))?;
    let store = state.store.clone();
    let (points, frames) = blocking(move || {
        let frames = store.stacks(&[stack])?.pop().map(|(_, f)| f);
        let frames = frames.ok_or_else(|| Error::NotFound(format!("stack {stack}")))?;
        Ok((store.site_series(&sel, stack)?, frames))
    })
    .await?;
    Ok(Json(json!({ "stack_id": stack, "frames": frames, "points": points })).into_response())
}

/// The window of `q` (24 h unless it says), kept or judged now, as
/// `leaks` and `predict` share it with the CLI.
async fn analysis(state: &AppState, q: &Params) -> ApiResult<crate::detect::Analysis> {
    let sel = q.selector(DAY)?;
    let (store, kept) = (state.store.clone(), q.kept_window());
    blocking(move || crate::continuous::analysis(&*store, &sel, kept, crate::select::now_ms()))
        .await
}

async fn leaks(State(state): State<Arc<AppState>>, Query(q): Query<Params>) -> ApiResult<Response> {
    Ok(Json(analysis(&state, &q).await?.leaks()).into_response())
}

async fn predict(
    State(state): State<Arc<AppState>>,
    Query(q): Query<Params>,
) -> ApiResult<Response> {
    let horizon = match q.horizon.as_deref() {
        Some(h) => crate::select::parse_duration("horizon", h)?,
        None => 7 * DAY,
    };
    let analysis = analysis(&state, &q).await?;
    Ok(Json(analysis.within_horizon(crate::select::ms(horizon))).into_response())
}

async fn store_stats(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    let store = state.store.clone();
    let out = blocking(move || store.stats()).await?;
    Ok(Json(out).into_response())
}

fn render(body: query::Rendered, name: &str) -> Response {
    match body {
        query::Rendered::Json(v) => Json(v).into_response(),
        query::Rendered::Text(t) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], t).into_response()
        }
        query::Rendered::Bytes(b) => {
            let disposition = format!(
                "attachment; filename=\"{}.pb.gz\"",
                name.replace(['"', '/', '\\'], "_")
            );
            let mut resp = Response::new(Body::from(b));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
    }
}
