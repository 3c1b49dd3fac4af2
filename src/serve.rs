//! The HTTP reward server: one judge, many clients, dynamic batching.
//!
//! The judge (a model on one device) is not shareable between threads, so it lives on ONE
//! dedicated worker thread, built there by a factory closure. HTTP handlers (axum on tokio) put
//! *jobs* — a list of pairs and a reply channel — on a bounded queue. The worker takes the first
//! job, then keeps collecting jobs for up to `max_wait` or until `max_batch` pairs, and judges
//! them all in one [`Judge::judge`] call (batched forward passes on the model). A job is never
//! split: one larger than `max_batch` is judged on its own.
//!
//! Endpoints (all JSON; errors are `{"error": "..."}`):
//!
//! | endpoint | request | response |
//! |---|---|---|
//! | `GET /health` | — | 200 `{"status":"ready"}` once the judge is loaded, 503 `{"status":"loading"}` before |
//! | `POST /judge` | `{"pairs":[{"prompt","response_a","response_b"}]}` | `{"results":[{"p_a","p_a_forward","p_a_reverse"}]}` |
//! | `POST /rank` | `{"rows":[{"prompt","responses":[...]}], "strategy"?}` | `{"results":[row + ranking]}` (see [`crate::rank::rank_rows`]) |
//! | `POST /reward` | `{"rows":[...], "reference"?, "scale"?}` | `{"results":[row + reward(s)]}` (see [`crate::reward::reward_rows`]) |
//! | `POST /get_reward` | OpenRLHF: `{"query":[...],"prompts":[...],"labels"?:[...]}` | `{"rewards":[...]}` |
//!
//! `/get_reward` follows OpenRLHF's remote reward-model protocol: `query[i]` is the full text
//! prompt + response, `prompts[i]` its prompt prefix (stripped to get the response), and
//! `labels[i]` a reference response. With a non-empty label the reward is the log-odds that the
//! response beats the label. **Fallback without a label** (labels absent, `null` or `""`): the
//! unlabeled responses that share a prompt form a group, and each one's reward is its centred
//! round-robin Bradley–Terry log-strength within that group (the log-odds of beating the group's
//! average response; 0 for a response alone with its prompt) — a GRPO-style relative reward
//! that needs no reference.
//!
//! Failures: queue full → 503 with `Retry-After`; body over `max_body_bytes` → 413; a text
//! over `max_chars` characters → 400; malformed JSON → 400 naming the problem; a judge error
//! or panic → 500 for the requests of that batch only (a failed multi-request batch is re-judged
//! request by request so one bad request cannot fail the others) while the server keeps running.
//! SIGINT/SIGTERM ([`serve`]) or [`Server::shutdown`] stop accepting connections, finish the
//! requests in flight, then stop the worker.

use crate::data::{Location, Row};
use crate::rank::{Strategy, rank_rows};
use crate::reward::{Baseline, Group, ReferenceChoice, Scale, group_rewards, reward_rows};
use crate::{Error, Judge, Pair, Result, Verdict};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Where to listen and how to batch and bound work.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Interface to bind, e.g. `127.0.0.1`.
    pub host: String,
    /// TCP port; 0 picks a free one (see [`Server::addr`]).
    pub port: u16,
    /// Most pairs collected into one judge call (≥ 1; 1 disables batching).
    pub max_batch: usize,
    /// Longest wait, after the first job of a batch arrives, for more jobs to join it.
    pub max_wait: Duration,
    /// Jobs that may wait in the queue (≥ 1); beyond that requests get 503.
    pub max_queue: usize,
    /// Largest request body in bytes; beyond that 413.
    pub max_body_bytes: usize,
    /// Longest prompt or response in characters; beyond that 400.
    pub max_chars: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 8000,
            max_batch: 32,
            max_wait: Duration::from_millis(10),
            max_queue: 256,
            max_body_bytes: 16 << 20,
            max_chars: 32_768,
        }
    }
}

/// A running server: its address, and a way to stop it.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: JoinHandle<Result<()>>,
}

impl Server {
    /// Bind and start serving in the background; the judge is built by `factory` on the worker
    /// thread (so it need not be `Send`). `/health` answers 503 until the factory returns.
    pub fn start<F, J>(factory: F, config: ServeConfig) -> Result<Server>
    where
        F: FnOnce() -> Result<J> + Send + 'static,
        J: Judge + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr, thread) = launch(factory, config, async {
            let _ = stopped.await;
        })?;
        Ok(Server {
            addr,
            stop: Some(stop),
            thread,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop gracefully: refuse new connections, finish requests in flight, stop the worker.
    /// Returns the judge factory's error if loading failed.
    pub fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        join(self.thread)
    }
}

/// Serve until SIGINT or SIGTERM, then shut down gracefully.
pub fn serve<F, J>(factory: F, config: ServeConfig) -> Result<()>
where
    F: FnOnce() -> Result<J> + Send + 'static,
    J: Judge + 'static,
{
    let (addr, thread) = launch(factory, config, crate::interrupt::termination_signal())?;
    eprintln!("gram serve: listening on http://{addr}");
    join(thread)
}

fn join(thread: JoinHandle<Result<()>>) -> Result<()> {
    thread
        .join()
        .unwrap_or_else(|_| Err(Error::invalid("the server thread panicked")))
}

/// Bind, then run the HTTP server and the judge worker on a background thread until `stop`
/// resolves or the judge fails to load. The thread's result is the factory's error, if any.
fn launch<F, J>(
    factory: F,
    config: ServeConfig,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, JoinHandle<Result<()>>)>
where
    F: FnOnce() -> Result<J> + Send + 'static,
    J: Judge + 'static,
{
    if config.max_batch == 0 || config.max_queue == 0 {
        return Err(Error::invalid(
            "--max-batch and --max-queue must be at least 1",
        ));
    }
    let bind_error = |e| {
        Error::invalid(format!(
            "cannot listen on {}:{}: {e}",
            config.host, config.port
        ))
    };
    let listener =
        std::net::TcpListener::bind((config.host.as_str(), config.port)).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::invalid(format!("cannot start the async runtime: {e}")))?;
    let thread = std::thread::spawn(move || {
        let (queue, jobs) = sync_channel::<Job>(config.max_queue);
        let ready = Arc::new(AtomicBool::new(false));
        let (load_failed, load_failure) = oneshot::channel::<()>();
        let batching = (config.max_batch, config.max_wait);
        let worker_ready = ready.clone();
        let worker = std::thread::spawn(move || {
            let mut judge = match catch_unwind(AssertUnwindSafe(factory)) {
                Ok(Ok(judge)) => judge,
                Ok(Err(error)) => {
                    let _ = load_failed.send(());
                    return Err(error);
                }
                Err(panic) => {
                    let _ = load_failed.send(());
                    return Err(Error::invalid(format!(
                        "loading the judge panicked: {}",
                        panic_text(&*panic)
                    )));
                }
            };
            drop(load_failed);
            worker_ready.store(true, Ordering::SeqCst);
            work(&mut judge, jobs, batching);
            Ok(())
        });
        let state = AppState {
            queue,
            ready,
            limits: Arc::new(config),
        };
        let served = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let shutdown = async move {
                tokio::select! {
                    _ = stop => {}
                    Ok(()) = load_failure => {}
                }
            };
            axum::serve(listener, router(state))
                .with_graceful_shutdown(shutdown)
                .await
        });
        // The router (and with it the queue's sender) is gone: the worker drains and exits.
        let loaded = join(worker);
        drop(runtime);
        served.map_err(|e| Error::invalid(format!("the HTTP server failed: {e}")))?;
        loaded
    });
    Ok((addr, thread))
}

/// Pairs to judge and where to send the verdicts.
struct Job {
    pairs: Vec<Pair>,
    reply: oneshot::Sender<Result<Vec<Verdict>, Failure>>,
}

/// Why a job got no verdicts.
#[derive(Debug, Clone)]
enum Failure {
    /// The queue was full.
    Busy,
    /// The worker has stopped (shutting down, or the judge failed to load).
    Unavailable,
    /// The judge returned an error.
    Judge(String),
    /// The judge panicked.
    Panic(String),
}

/// The worker loop: collect a batch, judge it in one call, answer every job; until the queue's
/// senders are all gone.
fn work(judge: &mut dyn Judge, jobs: Receiver<Job>, (max_batch, max_wait): (usize, Duration)) {
    let mut held_over: Option<Job> = None;
    loop {
        let Some(first) = held_over.take().or_else(|| jobs.recv().ok()) else {
            return;
        };
        let deadline = Instant::now() + max_wait;
        let mut size = first.pairs.len();
        let mut batch = vec![first];
        while size < max_batch {
            match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(job) if size + job.pairs.len() > max_batch => {
                    held_over = Some(job);
                    break;
                }
                Ok(job) => {
                    size += job.pairs.len();
                    batch.push(job);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        judge_batch(judge, batch);
    }
}

/// Judge all jobs' pairs in one call; if that fails and there were several jobs, judge each job
/// alone so the failure reaches only the job that caused it.
fn judge_batch(judge: &mut dyn Judge, batch: Vec<Job>) {
    // Requests whose clients have gone need no verdicts.
    let batch: Vec<Job> = batch
        .into_iter()
        .filter(|job| !job.reply.is_closed())
        .collect();
    let pairs: Vec<Pair> = batch
        .iter()
        .flat_map(|job| job.pairs.iter().cloned())
        .collect();
    if pairs.is_empty() {
        for job in batch {
            let _ = job.reply.send(Ok(Vec::new()));
        }
        return;
    }
    match judge_guarded(judge, &pairs) {
        Ok(verdicts) => {
            let mut verdicts = verdicts.into_iter();
            for job in batch {
                let answer: Vec<Verdict> = verdicts.by_ref().take(job.pairs.len()).collect();
                let _ = job.reply.send(Ok(answer));
            }
        }
        Err(failure) if batch.len() == 1 => {
            let _ = batch
                .into_iter()
                .next()
                .expect("one job")
                .reply
                .send(Err(failure));
        }
        Err(_) => {
            for job in batch {
                let answer = judge_guarded(judge, &job.pairs);
                let _ = job.reply.send(answer);
            }
        }
    }
}

/// One judge call with panics caught and the verdict count checked.
fn judge_guarded(judge: &mut dyn Judge, pairs: &[Pair]) -> Result<Vec<Verdict>, Failure> {
    match catch_unwind(AssertUnwindSafe(|| judge.judge(pairs))) {
        Ok(Ok(verdicts)) if verdicts.len() == pairs.len() => Ok(verdicts),
        Ok(Ok(verdicts)) => Err(Failure::Judge(format!(
            "the judge returned {} verdicts for {} pairs",
            verdicts.len(),
            pairs.len()
        ))),
        Ok(Err(error)) => Err(Failure::Judge(error.to_string())),
        Err(panic) => {
            let message = panic_text(&*panic);
            eprintln!(
                "gram serve: the judge panicked on a batch of {} pairs: {message}",
                pairs.len()
            );
            Err(Failure::Panic(message))
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    queue: SyncSender<Job>,
    ready: Arc<AtomicBool>,
    limits: Arc<ServeConfig>,
}

impl AppState {
    /// Queue `pairs` for the worker; the receiver yields the verdicts.
    fn submit(
        &self,
        pairs: Vec<Pair>,
    ) -> Result<oneshot::Receiver<Result<Vec<Verdict>, Failure>>, Failure> {
        let (reply, answer) = oneshot::channel();
        match self.queue.try_send(Job { pairs, reply }) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) => Err(Failure::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Failure::Unavailable),
        }
    }

    /// 400 unless `text` (at `field`) fits `max_chars`.
    fn check_length(&self, field: impl FnOnce() -> String, text: &str) -> Result<(), ApiError> {
        let chars = text.chars().count();
        if chars > self.limits.max_chars {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "{} has {chars} characters; the limit is {}",
                    field(),
                    self.limits.max_chars
                ),
            ));
        }
        Ok(())
    }

    /// Run library code that calls a judge on a blocking thread, its judge calls going through
    /// the queue (so they are batched with everyone else's).
    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn Judge) -> Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let mut judge = QueueJudge {
            state: self.clone(),
            failure: None,
        };
        let outcome = tokio::task::spawn_blocking(move || {
            let result = work(&mut judge);
            (result, judge.failure)
        })
        .await;
        match outcome {
            Ok((Ok(value), _)) => Ok(value),
            Ok((Err(_), Some(failure))) => Err(failure.into()),
            // No judge failure: the library rejected the request itself (a bad row).
            Ok((Err(error), None)) => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, error.to_string()))
            }
            Err(join_error) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                join_error.to_string(),
            )),
        }
    }
}

/// A [`Judge`] for blocking threads that hands its pairs to the worker and waits.
struct QueueJudge {
    state: AppState,
    /// The first failure, to answer with the right status.
    failure: Option<Failure>,
}

impl Judge for QueueJudge {
    fn judge(&mut self, pairs: &[Pair]) -> Result<Vec<Verdict>> {
        let answer = self
            .state
            .submit(pairs.to_vec())
            .and_then(|answer| answer.blocking_recv().unwrap_or(Err(Failure::Unavailable)));
        answer.map_err(|failure| {
            let error = Error::invalid(ApiError::from(failure.clone()).message);
            self.failure.get_or_insert(failure);
            error
        })
    }
}

/// An error answer: status, message, and for 503 a `Retry-After` (seconds).
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Busy => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the judge queue is full; retry later",
                )
            },
            Failure::Unavailable => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the judge is not running")
            }
            Failure::Judge(message) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("judge error: {message}"),
            ),
            Failure::Panic(message) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the judge panicked: {message}"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

fn router(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/judge", post(judge_pairs))
        .route("/rank", post(rank))
        .route("/reward", post(reward))
        .route("/get_reward", post(get_reward))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Decode a JSON body: 413 over the size limit, 400 naming what is malformed.
fn parse<T: DeserializeOwned>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body exceeds the limit of {} bytes",
                state.limits.max_body_bytes
            ),
        ),
        status => ApiError::new(status, rejection.body_text()),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("malformed JSON request: {e}"),
        )
    })
}

fn ok(value: Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

async fn health(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        ok(json!({ "status": "ready" }))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "loading" })),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct JudgeRequest {
    pairs: Vec<Pair>,
}

async fn judge_pairs(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: JudgeRequest = parse(&state, body)?;
    for (i, pair) in request.pairs.iter().enumerate() {
        state.check_length(|| format!("pairs[{i}].prompt"), &pair.prompt)?;
        state.check_length(|| format!("pairs[{i}].response_a"), &pair.response_a)?;
        state.check_length(|| format!("pairs[{i}].response_b"), &pair.response_b)?;
    }
    let answer = state.submit(request.pairs)?;
    let verdicts = answer.await.unwrap_or(Err(Failure::Unavailable))?;
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
    /// read.
    fn rows(self, state: &AppState) -> Result<Vec<Row>, ApiError> {
        for (i, row) in self.rows.iter().enumerate() {
            for field in ["prompt", "response", "reference", "greedy"] {
                if let Some(Value::String(text)) = row.get(field) {
                    state.check_length(|| format!("rows[{i}].{field}"), text)?;
                }
            }
            if let Some(Value::Array(responses)) = row.get("responses") {
                for (k, text) in responses
                    .iter()
                    .enumerate()
                    .filter_map(|(k, v)| Some((k, v.as_str()?)))
                {
                    state.check_length(|| format!("rows[{i}].responses[{k}]"), text)?;
                }
            }
        }
        Ok(self
            .rows
            .into_iter()
            .enumerate()
            .map(|(i, fields)| Row::new(Location::request(i), fields))
            .collect())
    }
}

/// Parse an optional option value by name; 400 if unknown.
fn option<T: std::str::FromStr<Err = Error> + Default>(
    value: &Option<String>,
) -> Result<T, ApiError> {
    value
        .as_deref()
        .map_or(Ok(T::default()), str::parse)
        .map_err(|e: Error| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

async fn rank(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: RowsRequest = parse(&state, body)?;
    let strategy: Strategy = option(&request.strategy)?;
    let rows = request.rows(&state)?;
    let results = state
        .run_blocking(move |judge| rank_rows(judge, &rows, strategy))
        .await?;
    Ok(ok(json!({ "results": results })))
}

async fn reward(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: RowsRequest = parse(&state, body)?;
    let reference: ReferenceChoice = option(&request.reference)?;
    let scale: Scale = option(&request.scale)?;
    let rows = request.rows(&state)?;
    let results = state
        .run_blocking(move |judge| reward_rows(judge, &rows, reference, scale))
        .await?;
    Ok(ok(json!({ "results": results })))
}

/// OpenRLHF's remote reward-model request.
#[derive(Deserialize)]
struct GetRewardRequest {
    query: Vec<String>,
    prompts: Vec<String>,
    #[serde(default)]
    labels: Option<Vec<Option<String>>>,
}

async fn get_reward(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: GetRewardRequest = parse(&state, body)?;
    let groups = openrlhf_groups(&state, request)?;
    let count: usize = groups.iter().map(|(_, indices)| indices.len()).sum();
    let results = state
        .run_blocking(move |judge| {
            let (groups, indices): (Vec<Group>, Vec<Vec<usize>>) = groups.into_iter().unzip();
            let rewards = group_rewards(judge, &groups, Scale::LogOdds)?;
            let mut flat = vec![0.0; count];
            for (group_indices, rewards_of_group) in indices.iter().zip(rewards) {
                for (&index, reward) in group_indices.iter().zip(rewards_of_group) {
                    flat[index] = reward;
                }
            }
            Ok(flat)
        })
        .await?;
    Ok(ok(json!({ "rewards": results })))
}

/// Split OpenRLHF queries into groups: each labeled query against its label, the unlabeled ones
/// round-robin with the others of the same prompt. Each group carries the queries' indices.
fn openrlhf_groups(
    state: &AppState,
    request: GetRewardRequest,
) -> Result<Vec<(Group, Vec<usize>)>, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let n = request.query.len();
    if request.prompts.len() != n {
        return Err(bad(format!(
            "`prompts` has {} entries but `query` has {n}",
            request.prompts.len()
        )));
    }
    let labels = request.labels.unwrap_or_else(|| vec![None; n]);
    if labels.len() != n {
        return Err(bad(format!(
            "`labels` has {} entries but `query` has {n}",
            labels.len()
        )));
    }
    let mut groups: Vec<(Group, Vec<usize>)> = Vec::new();
    for (i, ((query, prompt), label)) in request
        .query
        .iter()
        .zip(&request.prompts)
        .zip(labels)
        .enumerate()
    {
        state.check_length(|| format!("query[{i}]"), query)?;
        let Some(response) = query.strip_prefix(prompt.as_str()) else {
            return Err(bad(format!("query[{i}] does not start with prompts[{i}]")));
        };
        match label.filter(|label| !label.is_empty()) {
            Some(label) => {
                state.check_length(|| format!("labels[{i}]"), &label)?;
                let group = Group {
                    prompt: prompt.clone(),
                    responses: vec![response.to_owned()],
                    baseline: Baseline::Reference(label),
                };
                groups.push((group, vec![i]));
            }
            None => {
                let existing = groups.iter_mut().find(|(group, _)| {
                    group.baseline == Baseline::RoundRobin && group.prompt == *prompt
                });
                match existing {
                    Some((group, indices)) => {
                        group.responses.push(response.to_owned());
                        indices.push(i);
                    }
                    None => {
                        let group = Group {
                            prompt: prompt.clone(),
                            responses: vec![response.to_owned()],
                            baseline: Baseline::RoundRobin,
                        };
                        groups.push((group, vec![i]));
                    }
                }
            }
        }
    }
    Ok(groups)
}
