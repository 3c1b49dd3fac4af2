//! The router and the handlers of `/health`, `/judge`, `/rank` and `/reward` (`/get_reward` is
//! in [`super::openrlhf`]), with the state they share.
//!
//! Every prompt and response field of every endpoint is read as data rows read them
//! ([`Row::prompt`], [`Row::response`]): text (chat-template markup undone by
//! [`crate::chat_format`]) or chat messages, a response being one assistant message; a bad shape
//! is 400 naming the list element and field (`pairs:1: field `response_a[0].role`: …`).

use super::ServeConfig;
use super::batcher::{Queue, QueueJudge};
use super::groups::Groups;
use super::http::{ApiError, BodyBudget, ok, parse, read_body, reply};
use super::metrics::{self, Metrics};
use super::openrlhf;
use crate::data::{Location, Row};
use crate::rank::{Strategy, rank_rows_with};
use crate::reward::{ReferenceChoice, Scale, reward_rows_with};
use crate::{Error, Judge, Pair, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What every handler shares.
#[derive(Clone)]
pub(super) struct AppState {
    /// The judge worker's job queue.
    pub queue: Queue,
    /// Raised once the judge is loaded.
    pub ready: Arc<AtomicBool>,
    /// The body and text limits.
    pub limits: Arc<ServeConfig>,
    /// Rollout groups gathered across `/get_reward` requests (`--group-size` ≥ 2).
    pub groups: Option<Arc<Groups>>,
    /// What `GET /metrics` reports.
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// Decode a JSON body within the body limit (see [`parse`]).
    pub(super) fn parse<T: DeserializeOwned>(
        &self,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<T, ApiError> {
        parse(body, self.limits.max_body_bytes)
    }

    /// 400 unless `text` (at `field`) fits `max_chars`.
    pub(super) fn check_length(
        &self,
        field: impl FnOnce() -> String,
        text: &str,
    ) -> Result<(), ApiError> {
        let chars = text.chars().count();
        if chars > self.limits.max_chars {
            return Err(ApiError::bad_request(format!(
                "{} has {chars} characters; the limit is {}",
                field(),
                self.limits.max_chars
            )));
        }
        Ok(())
    }

    /// Run library code that calls a judge on a blocking thread, its judge calls going through
    /// the queue (so they are batched with everyone else's). A worker failure answers with its
    /// own status; any other error of `work` is the request's fault (400).
    pub(super) async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn Judge) -> Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        // Raised if this future is dropped (deadline passed, client gone): the blocking work's
        // queued jobs are then skipped and its next judge call fails.
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancelled.clone());
        let mut judge = QueueJudge::new(self.queue.clone(), cancelled);
        let outcome = tokio::task::spawn_blocking(move || {
            let result = work(&mut judge);
            (result, judge.failure())
        })
        .await;
        match outcome {
            Ok((Ok(value), _)) => Ok(value),
            Ok((Err(_), Some(failure))) => Err(failure.into()),
            // No judge failure: the library rejected the request itself (a bad row).
            Ok((Err(error), None)) => Err(ApiError::bad_request(error.to_string())),
            Err(join_error) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                join_error.to_string(),
            )),
        }
    }
}

/// Raises its flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Every endpoint behind [`guard`], with request bodies read whole first ([`read_body`]).
/// Every path the server answers (what `/metrics` labels requests by).
pub(super) const ENDPOINTS: [&str; 6] = [
    "/health",
    "/judge",
    "/rank",
    "/reward",
    "/get_reward",
    "/metrics",
];

pub(super) fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/judge", post(judge_pairs))
        .route("/rank", post(rank))
        .route("/reward", post(reward))
        .route("/get_reward", post(openrlhf::get_reward))
        .route("/metrics", get(metrics::metrics))
        .layer(middleware::from_fn_with_state(
            BodyBudget::new(state.limits.clone()),
            read_body,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Before any handler: 401 without the API key (when one is set; `GET /health` is open), 415
/// for a POST whose body is not declared `application/json`; then the handler, cut off with 504
/// at the request deadline (dropping it, so its queued jobs are not judged).
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let open = request.method() == Method::GET && request.uri().path() == "/health";
    if let Some(key) = state.limits.api_key.as_deref().filter(|_| !open) {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
        if !presented.is_some_and(|token| same_secret(key.as_bytes(), token)) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key (send `Authorization: Bearer KEY`)",
            )
            .into_response();
        }
    }
    if request.method() == Method::POST && !is_json(request.headers()) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be sent with `Content-Type: application/json`",
        )
        .into_response();
    }
    let deadline = state.limits.request_timeout;
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the request took longer than the deadline of {} s",
                deadline.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// Whether `Content-Type` is `application/json`, parameters (`; charset=utf-8`) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// `key == presented` in time that depends only on the key's length, not on where they differ.
fn same_secret(key: &[u8], presented: &[u8]) -> bool {
    let mut difference = (key.len() != presented.len()) as u8;
    for (i, &byte) in key.iter().enumerate() {
        difference |= byte ^ presented.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(difference) == 0
}

/// `GET /health`: 200 `ready` once the judge is loaded, 503 `loading` before; with the model
/// and the server's settings.
async fn health(State(state): State<AppState>) -> Response {
    let config = &state.limits;
    let ready = state.ready.load(Ordering::SeqCst);
    let body = json!({
        "status": if ready { "ready" } else { "loading" },
        "model": config.model,
        "server": {
            "max_batch": config.max_batch,
            "max_wait_ms": config.max_wait.as_millis() as u64,
            "max_queue": config.max_queue,
            "group_size": config.group_size,
            "group_wait_ms": config.group_wait.as_millis() as u64,
            "request_timeout_secs": config.request_timeout.as_secs(),
        },
    });
    if ready {
        ok(body)
    } else {
        reply(StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

#[derive(Deserialize)]
struct JudgeRequest {
    pairs: Vec<Map<String, Value>>,
}

/// `POST /judge`: one verdict per pair (`prompt`, `response_a`, `response_b`, each text or chat
/// messages, see [`Row::prompt`] and [`Row::response`]).
async fn judge_pairs(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: JudgeRequest = state.parse(body)?;
    let mut pairs = Vec::with_capacity(request.pairs.len());
    for (i, fields) in request.pairs.into_iter().enumerate() {
        let row = Row::new(Location::request("pairs", i), fields);
        let text = |field: &str, read: fn(&Row, &str) -> Result<String>| {
            let text = read(&row, field).map_err(|e| ApiError::bad_request(e.to_string()))?;
            state.check_length(|| format!("pairs[{i}].{field}"), &text)?;
            Ok::<_, ApiError>(text)
        };
        pairs.push(Pair::new(
            text("prompt", Row::prompt)?,
            text("response_a", Row::response)?,
            text("response_b", Row::response)?,
        ));
    }
    let verdicts = state.queue.judge(pairs).await?;
    Ok(ok(json!({ "results": verdicts })))
}

/// `/rank` and `/reward` bodies: rows plus the command's options by name.
#[derive(Deserialize)]
struct RowsRequest {
    rows: Vec<Map<String, Value>>,
    strategy: Option<String>,
    reference: Option<String>,
    scale: Option<String>,
}

impl RowsRequest {
    /// The rows, located by their index in `rows`, after checking every text the judge would
    /// read (as [`Row::prompt`], [`Row::response`] and [`Row::responses`] read it).
    fn rows(self, state: &AppState) -> Result<Vec<Row>, ApiError> {
        let rows: Vec<Row> = self
            .rows
            .into_iter()
            .enumerate()
            .map(|(i, fields)| Row::new(Location::request("rows", i), fields))
            .collect();
        let bad = |e: Error| ApiError::bad_request(e.to_string());
        for (i, row) in rows.iter().enumerate() {
            for field in ["prompt", "response", "reference", "greedy"] {
                if row.fields.contains_key(field) {
                    let text = if field == "prompt" {
                        row.prompt(field)
                    } else {
                        row.response(field)
                    };
                    state.check_length(|| format!("rows[{i}].{field}"), &text.map_err(bad)?)?;
                }
            }
            if row.fields.contains_key("responses") {
                let responses = row.responses("responses").map_err(bad)?;
                for (k, text) in responses.iter().enumerate() {
                    state.check_length(|| format!("rows[{i}].responses[{k}]"), text)?;
                }
            }
        }
        Ok(rows)
    }
}

/// Parse an optional option value by name; 400 if unknown.
fn option<T: std::str::FromStr<Err = Error> + Default>(
    value: &Option<String>,
) -> Result<T, ApiError> {
    value
        .as_deref()
        .map_or(Ok(T::default()), str::parse)
        .map_err(|e: Error| ApiError::bad_request(e.to_string()))
}

/// `POST /rank`: each row's responses ranked (see [`crate::rank::rank_rows`]).
async fn rank(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: RowsRequest = state.parse(body)?;
    let strategy: Strategy = option(&request.strategy)?;
    let rows = request.rows(&state)?;
    let limits = state.limits.ranking;
    let results = state
        .run_blocking(move |judge| rank_rows_with(judge, &rows, strategy, &limits))
        .await?;
    Ok(ok(json!({ "results": results })))
}

/// `POST /reward`: each row's reward(s) (see [`crate::reward::reward_rows`]).
async fn reward(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: RowsRequest = state.parse(body)?;
    let reference: ReferenceChoice = option(&request.reference)?;
    let scale: Scale = option(&request.scale)?;
    let rows = request.rows(&state)?;
    let limits = state.limits.ranking;
    let results = state
        .run_blocking(move |judge| reward_rows_with(judge, &rows, reference, scale, &limits))
        .await?;
    Ok(ok(json!({ "results": results })))
}
