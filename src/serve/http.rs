//! HTTP plumbing shared by the handlers: error answers and their status codes, request bodies
//! read within their size and time limits, JSON bodies in and out.

use super::ServeConfig;
use super::batcher::Failure;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::LengthLimitError;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// An error answer, sent as `{"error": message}`: status, message, and for 503 a `Retry-After`
/// (seconds).
#[derive(Debug, Clone)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request itself is wrong.
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

/// A full queue is 503 with `Retry-After: 1`, a stopped worker 503, a passed deadline 504, a
/// judge error or panic 500.
impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        let message = failure.to_string();
        match failure {
            Failure::Busy => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
            },
            Failure::Unavailable => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message),
            Failure::Cancelled => ApiError::new(StatusCode::GATEWAY_TIMEOUT, message),
            Failure::Judge(_) | Failure::Panic(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = reply(self.status, json!({ "error": self.message }));
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The request bodies held in memory by all requests together, in KiB: each request reserves
/// the most its body can be (its `Content-Length`, or `max_body_bytes` for a chunked body)
/// before reading it, and keeps the reservation until it is answered, as its parsed form lives
/// that long.
#[derive(Clone)]
pub(super) struct BodyBudget {
    limits: Arc<ServeConfig>,
    kib: Arc<Semaphore>,
}

impl BodyBudget {
    pub(super) fn new(limits: Arc<ServeConfig>) -> Self {
        let kib = Arc::new(Semaphore::new(limits.max_body_memory.div_ceil(1024)));
        BodyBudget { limits, kib }
    }
}

/// Read the whole request body before the handler runs, so that what a client does not send
/// cannot hold a handler: 413 over `max_body_bytes` (a declared `Content-Length` is refused
/// before reading), 503 with `Retry-After` while the bodies in memory would exceed
/// `max_body_memory`, 408 if it has not all arrived within `body_timeout` of the head (a
/// client that sends its headers and stalls, or trickles its body); then the handler, with the
/// body in memory.
pub(super) async fn read_body(
    State(budget): State<BodyBudget>,
    request: Request,
    next: Next,
) -> Response {
    let limits = &budget.limits;
    let (limit, timeout) = (limits.max_body_bytes, limits.body_timeout);
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds the limit of {limit} bytes"),
        )
        .into_response()
    };
    let size = request.body().size_hint();
    if size.lower() > limit as u64 {
        return too_large();
    }
    let most = size
        .upper()
        .map_or(limit, |upper| upper.min(limit as u64) as usize);
    let Ok(_reserved) = budget
        .kib
        .clone()
        .try_acquire_many_owned(most.div_ceil(1024) as u32)
    else {
        return ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the request bodies in memory have reached the limit of {} bytes; retry later",
                    limits.max_body_memory
                ),
            )
        }
        .into_response();
    };
    let (head, body) = request.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(head, Body::from(bytes))).await,
        Ok(Err(error)) if over_limit(&error) => too_large(),
        Ok(Err(error)) => {
            ApiError::bad_request(format!("reading the request body failed: {error}"))
                .into_response()
        }
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// Whether reading a body failed because it exceeded its length limit.
fn over_limit(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = cause {
        if error.is::<LengthLimitError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Decode a JSON body: 413 over `max_body_bytes`, 400 naming what is malformed.
pub(super) fn parse<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    max_body_bytes: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds the limit of {max_body_bytes} bytes"),
        ),
        status => ApiError::new(status, rejection.body_text()),
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON request: {e}")))
}

/// A JSON answer with `status`.
pub(super) fn reply(status: StatusCode, value: Value) -> Response {
    (status, axum::Json(value)).into_response()
}

/// A 200 JSON answer.
pub(super) fn ok(value: Value) -> Response {
    reply(StatusCode::OK, value)
}
