//! HTTP plumbing shared by the handlers: error answers and their status codes, JSON bodies in
//! and out.

use super::batcher::Failure;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

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
