//! `POST /v1/ingest`, cheapest refusal first: the token, the per-agent
//! rate limit (keyed on the token and the peer, never on the body), the
//! declared size, a share of the body budget, then one of the decode
//! slots, held until the store commits. Only then is the batch
//! acknowledged. Every refusal before decoding costs no more than its
//! headers.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::Quota;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::Caller;
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

/// An agent as the rate limit knows it: the name of the token it
/// authenticated with and where it connects from. Both come before the
/// body is read.
type AgentKey = (String, IpAddr);

/// A token bucket per [`AgentKey`] (`governor`'s GCRA).
pub struct RateLimiter {
    limiter: governor::RateLimiter<AgentKey, DefaultKeyedStateStore<AgentKey>, DefaultClock>,
}

/// Peers remembered at most; past it the idle ones are forgotten.
const MAX_PEERS: usize = 100_000;

impl RateLimiter {
    pub fn new(rate: RateLimit) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate.per_second.max(1e-3));
        let burst = NonZeroU32::new(rate.burst.max(1.0) as u32).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        RateLimiter {
            limiter: governor::RateLimiter::keyed(quota),
        }
    }

    /// The wait before the next batch would be accepted, if this one is
    /// over the limit.
    fn over_rate(&self, key: &AgentKey) -> Option<Duration> {
        if self.limiter.len() > MAX_PEERS {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(key)
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// What ingest holds in memory at once: bodies being read, by their
/// declared size, and batches being decoded and stored.
pub struct IngestGates {
    body_bytes: Arc<Semaphore>,
    decode: Arc<Semaphore>,
}

/// Bodies in flight at most, in bytes as sent.
const BODY_BUDGET: usize = 32 << 20;
/// Batches decoded or waiting on the store at once: decoding is bound by
/// the cores, and each decode may hold up to about 100 MiB of a hostile
/// batch (`docs/security.md`).
const DECODE_SLOTS: usize = 2;
/// How long a batch may wait for a decode slot before the agent is told
/// to come back later.
const DECODE_WAIT: Duration = Duration::from_secs(5);

impl Default for IngestGates {
    fn default() -> Self {
        IngestGates {
            body_bytes: Arc::new(Semaphore::new(BODY_BUDGET)),
            decode: Arc::new(Semaphore::new(DECODE_SLOTS)),
        }
    }
}

fn overloaded(what: &str) -> ApiError {
    ApiError {
        retry_after: Some(Duration::from_secs(1)),
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the analyzer is overloaded ({what}); try again later"),
        )
    }
}

/// What a body holds: an agent's batch, a heap profile from another
/// pprof source, or OpenTelemetry profiles.
enum Body {
    Agent,
    Pprof(crate::ingest::foreign::Source),
    Otlp,
}

/// The query of `POST /v1/ingest/pprof`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PprofParams {
    service: String,
    instance: String,
}

/// `POST /v1/ingest`, timed and counted for `/metrics`.
pub(super) async fn handler(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> ApiResult<Response> {
    counted(&state, req, Body::Agent).await
}

/// `POST /v1/ingest/pprof?service=&instance=`: a heap profile from any
/// pprof source, under the same gates as an agent's batch.
pub(super) async fn pprof_handler(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> ApiResult<Response> {
    may_ingest(&state, &req)?;
    let params = axum::extract::Query::<PprofParams>::try_from_uri(req.uri())
        .map_err(|e| ApiError::bad("query", e.body_text()))?;
    let source = crate::ingest::foreign::Source {
        service: params.0.service,
        instance: params.0.instance,
        origin: "push".into(),
    };
    counted(&state, req, Body::Pprof(source)).await
}

/// `POST /v1development/profiles`: OTLP profiles in protobuf, under the
/// same gates as an agent's batch; answered in protobuf.
pub(super) async fn otlp_handler(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> ApiResult<Response> {
    may_ingest(&state, &req)?;
    let content_type = req.headers().get(header::CONTENT_TYPE);
    let content_type = content_type.and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/x-protobuf") {
        return Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ..ApiError::bad(
                "Content-Type",
                format!("{content_type:?}: send OTLP profiles as application/x-protobuf (OTLP/JSON is not accepted)"),
            )
        });
    }
    counted(&state, req, Body::Otlp).await
}

/// Who asks comes before what is asked, so that a caller with no token
/// learns nothing of a route's parameters or formats.
fn may_ingest(state: &AppState, req: &Request) -> ApiResult<()> {
    let caller = state.auth.caller(req.headers());
    if caller.ingests_any() {
        return Ok(());
    }
    state.telemetry.reject(StatusCode::UNAUTHORIZED);
    Err(caller.refusal("send batches"))
}

async fn counted(state: &Arc<AppState>, req: Request, kind: Body) -> ApiResult<Response> {
    let started = std::time::Instant::now();
    let result = accept(state, req, kind).await;
    let t = &state.telemetry;
    t.ingest_seconds.observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => t.ingest_batches.inc(),
        Err(e) => t.reject(e.status),
    }
    result
}

async fn accept(state: &Arc<AppState>, req: Request, kind: Body) -> ApiResult<Response> {
    let caller = state.auth.caller(req.headers());
    if !caller.ingests_any() {
        return Err(caller.refusal("send batches"));
    }
    // A pprof push names its service in the query: refused before its
    // body is read. An agent's batch names it inside: checked once decoded.
    if let Body::Pprof(source) = &kind {
        in_scope(&caller, &source.service)?;
    }
    let peer = super::auth::peer(req.extensions());
    if let Some(wait) = state.rate.over_rate(&(caller.name().to_owned(), peer)) {
        return Err(ApiError {
            retry_after: Some(wait),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many batches from this agent",
            )
        });
    }
    let gzip = content_encoding(&req)?;
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
    // A body without a length may be as large as the limit.
    let share = declared.map_or(limit, |n| n as usize).clamp(1, BODY_BUDGET);
    let body_permit = state
        .gates
        .body_bytes
        .clone()
        .try_acquire_many_owned(share as u32)
        .map_err(|_| overloaded("too many bodies in flight"))?;
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| too_large())?;
    state.telemetry.ingest_bytes.inc_by(body.len() as u64);
    let slot = decode_slot(state).await?;
    drop(body_permit);
    let st = state.clone();
    let otlp = matches!(kind, Body::Otlp);
    let stored = blocking(move || decode_and_store(&st, &caller, kind, body, gzip, slot)).await?;
    let Stored {
        receipts,
        urgent,
        partial,
        wanted,
    } = stored;
    let mut outcome = None;
    for receipt in receipts {
        outcome = Some(receipt.done().await?);
    }
    // Judged once stored: an early pass reads what this batch brought.
    for service in urgent {
        state.urgent.flag(&service);
    }
    if otlp {
        let (rejected, reasons) = partial.unwrap_or_default();
        let body = crate::ingest::otlp::response(rejected, &reasons);
        return Ok(([(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response());
    }
    let mut reply = serde_json::to_value(outcome).unwrap_or_default();
    if !wanted.is_empty() {
        reply[heaptide_wire::DEBUGINFO_WANTED] = serde_json::json!(wanted);
    }
    Ok(Json(reply).into_response())
}

/// What storing a request's batches left to wait for.
struct Stored {
    receipts: Vec<crate::store::Receipt>,
    /// The services of urgent batches.
    urgent: Vec<String>,
    /// For OTLP, the profiles not taken and why.
    partial: Option<(u64, Vec<String>)>,
    /// The build-ids this agent is asked to upload debug files of.
    wanted: Vec<String>,
}

/// Decodes `body` as `kind` and hands each of its batches to the store,
/// once every one is known to be in the caller's scope.
fn decode_and_store(
    st: &AppState,
    caller: &Caller,
    kind: Body,
    body: axum::body::Bytes,
    gzip: bool,
    slot: OwnedSemaphorePermit,
) -> crate::Result<Stored> {
    let now = crate::select::now_ms();
    let agent = matches!(kind, Body::Agent);
    let (decoded, partial) = match kind {
        Body::Agent => (vec![ingest::decode(&body, gzip, &st.limits, now)?], None),
        // A pprof body is gzipped or not by its own magic bytes.
        Body::Pprof(source) => (
            vec![crate::ingest::foreign::batch(
                &body, &source, &st.limits, now,
            )?],
            None,
        ),
        Body::Otlp => {
            let o = crate::ingest::otlp::batches(&body, &st.limits, now)?;
            (o.batches, Some((o.rejected, o.reasons)))
        }
    };
    drop(body);
    // Every batch of a request is in scope, or none is stored.
    for d in &decoded {
        in_scope(caller, &d.batch.agent.service)?;
    }
    let (mut receipts, mut urgent, mut wanted) = (Vec::new(), Vec::new(), Vec::new());
    for mut d in decoded {
        let mut lacking = st
            .symbols
            .name_batch(&mut d, &*st.store, &st.limits.profile)?;
        // Only an agent uploads: other sources are asked for nothing. What
        // it announces is asked for before its first profile comes.
        if agent {
            let announced = &d.batch.heap_profiling.unnamed_objects;
            lacking.extend(st.symbols.without_files(announced));
            lacking.sort_unstable();
            lacking.dedup();
        }
        if agent && !lacking.is_empty() {
            let a = &d.batch.agent;
            let holder = super::debuginfo::holder(caller, &a.service, &a.instance);
            wanted.extend(st.symbols.claims.ask(&lacking, &holder));
        }
        let (receipt, u) = store_decoded(st, d, now)?;
        receipts.push(receipt);
        urgent.extend(u);
    }
    // The slot bounds decoded batches in memory; a batch waiting in a
    // store's insert is held there, under the store's own bound.
    drop(slot);
    Ok(Stored {
        receipts,
        urgent,
        partial,
        wanted,
    })
}

/// Drops a decoded batch's metric names past the caps and hands it to the
/// store; returns the receipt, and the service if the batch was urgent.
fn store_decoded(
    st: &AppState,
    mut decoded: ingest::ValidBatch,
    now: i64,
) -> crate::Result<(crate::store::Receipt, Option<String>)> {
    let refused = st.names.admit(&mut decoded.batch, now);
    st.telemetry.metric_names_refused.inc_by(refused);
    let urgent = decoded.batch.samples.iter().any(|s| {
        s.metrics
            .get(heaptide_wire::metric::AGENT_URGENT)
            .is_some_and(|v| *v >= 1.0)
    });
    let urgent = urgent.then(|| decoded.batch.agent.service.clone());
    let receipt = st.store.submit(&decoded, crate::select::now_ms());
    drop(decoded);
    Ok((receipt?, urgent))
}

/// A 403 for a batch of a service the caller's token may not send for.
fn in_scope(caller: &Caller, service: &str) -> crate::Result<()> {
    if caller.ingests(service) {
        return Ok(());
    }
    Err(crate::Error::Forbidden(format!(
        "token {:?} may not send batches for service {service:?}",
        caller.name()
    )))
}

pub(super) async fn decode_slot(state: &AppState) -> ApiResult<OwnedSemaphorePermit> {
    let acquire = state.gates.decode.clone().acquire_owned();
    match tokio::time::timeout(DECODE_WAIT, acquire).await {
        Ok(Ok(p)) => Ok(p),
        _ => Err(overloaded("every decode slot is busy")),
    }
}

fn content_encoding(req: &Request) -> ApiResult<bool> {
    match req
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("identity") => Ok(false),
        Some("gzip") => Ok(true),
        Some(other) => Err(ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ..ApiError::bad(
                "Content-Encoding",
                format!("unsupported content encoding {other:?}; use gzip or none"),
            )
        }),
    }
}
