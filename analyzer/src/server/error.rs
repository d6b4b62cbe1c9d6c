//! The server's one error type and its one blocking helper, shared by the
//! API (which answers JSON) and the dashboards (which answer a page).

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::{Error, StoreTrouble};

/// An error as the server reports it: a status, a message, the field at
/// fault, and how long to wait before retrying.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<Duration>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// A 400 naming the query parameter or field at fault.
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_owned()),
            ..ApiError::new(StatusCode::BAD_REQUEST, message)
        }
    }

    /// The same error, shown as an HTML page.
    pub fn page(self) -> PageError {
        PageError(self)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid { field, reason } => ApiError::bad(&field, reason),
            Error::NotFound(what) => {
                ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
            }
            Error::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, why),
            Error::StoreFailed { trouble, reason } => store_error(trouble, &reason),
            // The networked store is away: nothing was stored, and agents
            // keep their batches and send them again.
            e @ Error::StoreUnavailable { .. } => {
                tracing::warn!("{e}");
                ApiError {
                    retry_after: Some(Duration::from_secs(5)),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the store is unreachable; nothing was stored, try again later",
                    )
                }
            }
            e @ Error::Bound { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            // Paths, SQLite's text and the like stay in the log.
            other => {
                tracing::error!("request failed: {other}");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the analyzer failed; its log has the details",
                )
            }
        }
    }
}

/// A store failure as clients see it: what kind of trouble, never the SQL
/// or the store's own message, which go to the log. Trouble that passes
/// (a full disk, a busy file) is a 503 with `Retry-After`, so that agents
/// keep their data and send it again.
fn store_error(trouble: StoreTrouble, reason: &str) -> ApiError {
    tracing::error!("store failed: {reason}");
    match trouble.passing() {
        Some(why) => ApiError {
            retry_after: Some(Duration::from_secs(10)),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{why}; nothing was stored, try again later"),
            )
        },
        None => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store failed; the analyzer's log has the details",
        ),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(d) = self.retry_after {
            let secs = d.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// An [`ApiError`] for a browser: a page that says what is wrong.
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        let title = match e.status {
            StatusCode::NOT_FOUND => "not found",
            s if s.is_client_error() => "bad request",
            _ => "error",
        };
        (
            e.status,
            Html(heaptide_ui::pages::message(title, &e.message)),
        )
            .into_response()
    }
}

/// Runs store and engine work on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request's task failed",
        )),
    }
}
