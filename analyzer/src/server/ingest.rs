//! `POST /v1/ingest`: auth, decoding off the runtime, the per-agent rate
//! limit, and the store's commit before the acknowledgement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{blocking, ApiError, ApiResult};
use super::AppState;
use crate::ingest;

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

/// A token bucket per (service, instance).
#[derive(Debug, Default)]
pub struct RateLimiter {
    rate: RateLimit,
    buckets: Mutex<HashMap<(String, String), (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate: RateLimit) -> Self {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The wait before the next batch would be accepted, if this one is
    /// over the limit.
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

/// Ingest, timed and counted for `/metrics`.
pub(super) async fn handler(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> ApiResult<Response> {
    let started = std::time::Instant::now();
    let result = accept(&state, req).await;
    let t = &state.telemetry;
    t.ingest_seconds.observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => t.ingest_batches.inc(),
        Err(e) => t.reject(e.status),
    }
    result
}

async fn accept(state: &Arc<AppState>, req: Request) -> ApiResult<Response> {
    if !authorized(state, req.headers()) {
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
            return Err(ApiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ..ApiError::bad(
                    "Content-Encoding",
                    format!("unsupported content encoding {other:?}; use gzip or none"),
                )
            })
        }
    };
    let limit = state.limits.max_body_bytes;
    let too_large = || ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        ..ApiError::bad("body", format!("body larger than {limit} bytes"))
    };
    // A declared length over the limit is refused before any byte of the
    // body is read, so the client learns why instead of seeing a reset.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| too_large())?;
    state.telemetry.ingest_bytes.inc_by(body.len() as u64);
    let st = state.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        ingest::decode(&body, gzip, &st.limits, crate::select::now_ms())
    })
    .await
    .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "decode task failed"))??;
    if let Some(wait) = state
        .rate
        .over_rate(&decoded.batch.agent.service, &decoded.batch.agent.instance)
    {
        return Err(ApiError {
            retry_after: Some(wait),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many batches from this agent",
            )
        });
    }
    let store = state.store.clone();
    let outcome = blocking(move || store.ingest(&decoded, crate::select::now_ms())).await?;
    Ok(Json(outcome).into_response())
}
