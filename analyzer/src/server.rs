//! The HTTP server: ingest and the read API (`docs/api.md`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::error::Error;
use crate::ingest::{self, Limits};
use crate::query;
use crate::store::Store;

/// How many batches per second one agent may send, and the burst allowed.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 5.0,
            burst: 20.0,
        }
    }
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub token: Option<String>,
    pub limits: Limits,
    pub rate: RateLimit,
    buckets: Mutex<HashMap<(String, String), (f64, Instant)>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        token: Option<String>,
        limits: Limits,
        rate: RateLimit,
    ) -> Self {
        AppState {
            store,
            token,
            limits,
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Token bucket per (service, instance). Returns the wait before the
    /// next batch would be accepted, if this one is over the limit.
    fn over_rate(&self, service: &str, instance: &str) -> Option<Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            buckets.clear();
        }
        let now = Instant::now();
        let key = (service.to_owned(), instance.to_owned());
        let (tokens, at) = buckets.entry(key).or_insert((self.rate.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate.per_second)
            .min(self.rate.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64(
                (1.0 - *tokens) / self.rate.per_second,
            ))
        }
    }
}

/// The analyzer's routes, without the UI.
pub fn api_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(heaptide_wire::INGEST_PATH, post(ingest_handler))
        .route("/v1/services", get(services))
        .route("/v1/instances", get(instances))
        .route("/v1/metrics", get(metrics))
        .route("/v1/series", get(series))
        .route("/v1/pauses", get(pauses))
        .route("/v1/profiles", get(profiles))
        .route("/v1/profile", get(profile))
        .route("/v1/profile/diff", get(profile_diff))
        .route("/v1/site", get(site))
        .route("/v1/leaks", get(leaks))
        .route("/v1/predict", get(predict))
        .route("/v1/store", get(store_stats))
        .with_state(state)
}

/// An error as the API reports it: a status and `{"error", "field"}`.
pub struct ApiError(StatusCode, String, Option<String>, Option<Duration>);

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError(status, msg.into(), None, None)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid { field, reason } => {
                ApiError(StatusCode::BAD_REQUEST, reason, Some(field), None)
            }
            Error::NotFound(what) => {
                ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
            }
            other => {
                tracing::error!("request failed: {other}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.1 });
        if let Some(f) = self.2 {
            body["field"] = json!(f);
        }
        let mut resp = (self.0, Json(body)).into_response();
        if let Some(d) = self.3 {
            let secs = d.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs a store call on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store task failed",
        )),
    }
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(want) = &state.token else {
        return true;
    };
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare in time independent of where the first difference is.
    got.len() == want.len()
        && got
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn ingest_handler(State(state): State<Arc<AppState>>, req: Request) -> ApiResult<Response> {
    if !authorized(&state, req.headers()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ));
    }
    let gzip = match req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return Err(ApiError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content encoding {other:?}; use gzip or none"),
                Some("Content-Encoding".into()),
                None,
            ))
        }
    };
    let limit = state.limits.max_body_bytes;
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {limit} bytes"),
                Some("body".into()),
                None,
            )
        })?;
    let st = state.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        ingest::decode(&body, gzip, &st.limits, query::now_ms())
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "decode task failed"))??;
    if let Some(wait) = state.over_rate(&decoded.batch.agent.service, &decoded.batch.agent.instance)
    {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too many batches from this agent".into(),
            None,
            Some(wait),
        ));
    }
    let store = state.store.clone();
    let outcome = blocking(move || store.ingest(&decoded, query::now_ms())).await?;
    Ok(Json(outcome).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowQuery {
    pub service: Option<String>,
    pub instance: Option<String>,
    pub metric: Option<String>,
    /// A duration back from now, such as `1h` or `24h`.
    pub since: Option<String>,
    /// Unix milliseconds; overrides `since`.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// For profiles: the time wanted, Unix milliseconds.
    pub at: Option<i64>,
    pub format: Option<String>,
    /// For `/v1/site`: the stack id, as the profile endpoints report it.
    pub stack: Option<i64>,
}

fn required<'a>(v: &'a Option<String>, name: &str) -> ApiResult<&'a str> {
    v.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("query parameter {name} is required"),
            Some(name.into()),
            None,
        )
    })
}

fn selector(q: &WindowQuery) -> ApiResult<crate::store::Selector> {
    let service = required(&q.service, "service")?.to_owned();
    let (from_ms, to_ms) = query::window(q.since.as_deref(), q.from, q.to, query::now_ms())?;
    Ok(crate::store::Selector {
        service,
        instance: q.instance.clone(),
        from_ms,
        to_ms,
    })
}

async fn services(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    let store = state.store.clone();
    let out = blocking(move || query::services(&*store, query::now_ms())).await?;
    Ok(Json(json!({ "services": out })).into_response())
}

async fn instances(
    State(state): State<Arc<AppState>>,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Response> {
    let service = required(&q.service, "service")?.to_owned();
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
    Query(q): Query<WindowQuery>,
) -> ApiResult<Response> {
    let service = required(&q.service, "service")?.to_owned();
    let store = state.store.clone();
    let instance = q.instance.clone();
    let out = blocking(move || store.metric_names(&service, instance.as_deref())).await?;
    Ok(Json(json!({ "metrics": out })).into_response())
}

async fn series(
    State(state): State<Arc<AppState>>,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Response> {
    let sel = selector(&q)?;
    let metric = required(&q.metric, "metric")?.to_owned();
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
    Query(q): Query<WindowQuery>,
) -> ApiResult<Response> {
    let sel = selector(&q)?;
    let store = state.store.clone();
    let out = blocking(move || query::pauses(&*store, &sel)).await?;
    Ok(Json(out).into_response())
}

async fn profiles(
    State(state): State<Arc<AppState>>,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Response> {
    let sel = selector(&q)?;
    let store = state.store.clone();
    let out = blocking(move || store.profiles(&sel)).await?;
    Ok(Json(json!({ "profiles": out })).into_response())
}

async fn profile(
    State(state): State<Arc<AppState>>,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Response> {
    let service = required(&q.service, "service")?.to_owned();
    let instance = required(&q.instance, "instance")?.to_owned();
    let at = q.at.unwrap_or_else(query::now_ms);
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
    Query(q): Query<WindowQuery>,
) -> ApiResult<Response> {
    let service = required(&q.service, "service")?.to_owned();
    let instance = required(&q.instance, "instance")?.to_owned();
    let (from, to) = match (q.from, q.to) {
        (Some(f), Some(t)) if f < t => (f, t),
        _ => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "from and to (Unix ms, from < to) are required".into(),
                Some("from".into()),
                None,
            ))
        }
    };
    let format = q.format.clone().unwrap_or_else(|| "json".into());
    let store = state.store.clone();
    let diff = blocking(move || query::diff(&*store, &service, &instance, from, to)).await?;
    match format.as_str() {
        "json" => Ok(Json(diff).into_response()),
        other => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown format {other:?}; use json"),
            Some("format".into()),
            None,
        )),
    }
}

async fn site(
    State(state): State<Arc<AppState>>,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Response> {
    let sel = selector(&q)?;
    let stack = q.stack.ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "query parameter stack is required".into(),
            Some("stack".into()),
            None,
        )
    })?;
    let store = state.store.clone();
    let (points, frames) = blocking(move || {
        let frames = store.stacks(&[stack])?.pop().map(|(_, f)| f);
        let frames = frames.ok_or_else(|| Error::NotFound(format!("stack {stack}")))?;
        Ok((store.site_series(&sel, stack)?, frames))
    })
    .await?;
    Ok(Json(json!({ "stack_id": stack, "frames": frames, "points": points })).into_response())
}

fn analysis_query(q: &WindowQuery, default_since: &str) -> ApiResult<crate::detect::Query> {
    let since = q.since.as_deref().or(Some(default_since));
    let (from_ms, to_ms) = query::window(since, q.from, q.to, query::now_ms())?;
    Ok(crate::detect::Query {
        service: q.service.clone(),
        instance: q.instance.clone(),
        from_ms,
        to_ms,
    })
}

/// The engine over the window of `q`, as `leaks` and `predict` share it.
async fn analysis(state: &AppState, q: &WindowQuery) -> ApiResult<crate::detect::Analysis> {
    let aq = analysis_query(q, "24h")?;
    let store = state.store.clone();
    blocking(move || crate::detect::analyze(&*store, &aq, &Default::default())).await
}

async fn leaks(
    State(state): State<Arc<AppState>>,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Response> {
    Ok(Json(analysis(&state, &q).await?.leaks()).into_response())
}

async fn predict(
    State(state): State<Arc<AppState>>,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Response> {
    Ok(Json(analysis(&state, &q).await?).into_response())
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
