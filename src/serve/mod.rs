//! The HTTP reward server: one judge, many clients, dynamic batching.
//!
//! The judge (a model on one device) is not shareable between threads, so it lives on one
//! worker thread; HTTP handlers (axum on tokio) queue their pairs for it, and it judges the pairs
//! of many requests in one batched call (see `batcher.rs`).
//!
//! Endpoints (all JSON; errors are `{"error": "..."}`):
//!
//! | endpoint | request | response |
//! |---|---|---|
//! | `GET /health` | — | 200 `{"status":"ready", "model", "server"}` once the judge is loaded (the model and prompt settings of [`ServeConfig::model`], the batching and grouping settings), 503 `{"status":"loading", ...}` before |
//! | `GET /metrics` | — | Prometheus text format (`metrics.rs`) |
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
//! Access: with [`ServeConfig::api_key`] set, every endpoint but `GET /health` answers 401
//! unless the request carries `Authorization: Bearer KEY` (compared in constant time); a POST
//! whose `Content-Type` is not `application/json` (parameters allowed) → 415, so a web page
//! cannot post to the server without a CORS preflight (which it does not answer). A request
//! still unanswered after [`ServeConfig::request_timeout`] → 504; its jobs still queued are then
//! skipped (as are those of clients that disconnected), a batch already running finishes, and
//! a request judged in several calls (one over `max_batch` pairs, or a ranking) stops between
//! them.
//!
//! Connections (`connections.rs`): at most [`ServeConfig::max_connections`] open; a request's
//! head must arrive within [`ServeConfig::header_timeout`] of connecting or of the previous
//! response (which also closes idle keep-alive connections); its body within
//! [`ServeConfig::body_timeout`] of the head (408); the bodies held by all requests together
//! within [`ServeConfig::max_body_memory`] (503 with `Retry-After`); a response the client
//! stops reading is dropped after [`ServeConfig::send_timeout`] without progress.
//!
//! Memory a request can make the server allocate, each bounded before the allocation: its body
//! (`max_body_bytes`; all bodies together `max_body_memory`), the JSON parsed from it (about
//! 2× the body for `/judge`'s typed pairs, up to 32× for free-form row fields of `/rank` and
//! `/reward` made of tiny values, 32-byte `serde_json::Value`s from 2-byte `0,`), the verdicts
//! (one per pair), and on the device one judge call of at most `max_batch` pairs:
//! 2·`max_batch` sequences of at most the judge's maximum length (≤ 4,096 tokens), run
//! `batch_size` sequences per forward pass.
//!
//! Failures: queue full → 503 with `Retry-After`; body over `max_body_bytes` → 413; a text
//! over `max_chars` characters → 400; a row (or OpenRLHF prompt group) over the response
//! limits of `ranking`, or a request over its comparison limit → 400 naming the row and the
//! limit ([`crate::rank::Limits`]); malformed JSON → 400 naming the problem; a judge error
//! or panic → 500 for the requests of that batch only (a failed multi-request batch is re-judged
//! request by request so one bad request cannot fail the others) while the server keeps running.
//! SIGINT/SIGTERM ([`serve`]) or [`Server::shutdown`] stop accepting connections and give the
//! requests in flight until [`ServeConfig::shutdown_timeout`]; then the server stops without
//! them (and without waiting for a judge call still running).
//!
//! | file | part |
//! |---|---|
//! | `mod.rs` | configuration, starting and stopping the server |
//! | `connections.rs` | accepting connections within the cap and timeouts; the shutdown deadline |
//! | `batcher.rs` | the worker thread, its job queue, dynamic batching |
//! | `http.rs` | error answers and status codes, request bodies within their limits, JSON bodies |
//! | `routes.rs` | the router and the handlers of `/health`, `/judge`, `/rank`, `/reward` |
//! | `openrlhf.rs` | the `/get_reward` adapter |
//! | `groups.rs` | rollout groups gathered across `/get_reward` requests |
//! | `metrics.rs` | `GET /metrics` (Prometheus text format) |

mod batcher;
mod connections;
mod groups;
mod http;
mod metrics;
mod openrlhf;
mod routes;

use crate::{Error, Judge, Result};
use routes::AppState;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Where to listen and how to batch and bound work. Its `Debug` form hides the API key.
#[derive(Clone)]
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
    /// Most bytes of request bodies held at once, all requests together (each reserves its
    /// declared length, or `max_body_bytes`, until answered); beyond that 503 with
    /// `Retry-After`. At least `max_body_bytes`.
    pub max_body_memory: usize,
    /// Longest prompt or response in characters; beyond that 400.
    pub max_chars: usize,
    /// Responses per row and comparisons per request of `/rank`, `/reward` and `/get_reward`
    /// (see [`crate::rank::Limits`]); beyond them 400 naming the row and the limit.
    pub ranking: crate::rank::Limits,
    /// When set, every endpoint but `GET /health` needs `Authorization: Bearer KEY`; else 401.
    pub api_key: Option<String>,
    /// Longest a request may take, queueing included; beyond that 504, and its jobs still
    /// queued are not judged (a batch already running is not interrupted).
    pub request_timeout: Duration,
    /// Most connections open at once; beyond that new ones wait in the listen queue.
    pub max_connections: usize,
    /// Longest wait for a request's complete head, from the connection opening or its previous
    /// response: slow and idle (keep-alive) connections are closed after it.
    pub header_timeout: Duration,
    /// Longest wait for a request's complete body once its head has arrived; beyond that 408.
    pub body_timeout: Duration,
    /// Longest a response may wait for the client to take any of it (a client that stopped
    /// reading); then the connection is dropped.
    pub send_timeout: Duration,
    /// After the stop signal, how long requests in flight may still take before the server
    /// stops without them.
    pub shutdown_timeout: Duration,
    /// Unlabeled `/get_reward` samples of one prompt ranked together across requests; 1 = each
    /// request on its own (see `groups.rs`). At most `ranking.max_round_robin_responses`.
    pub group_size: usize,
    /// Longest a rollout group waits for its `group_size` samples after its first.
    pub group_wait: Duration,
    /// The judge's description for `GET /health`: model name and prompt settings (the CLI
    /// fills it from its flags; `null` if unknown).
    pub model: serde_json::Value,
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
            max_body_memory: 256 << 20,
            max_chars: 32_768,
            ranking: crate::rank::Limits::default(),
            api_key: None,
            request_timeout: Duration::from_secs(600),
            max_connections: 512,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            group_size: 1,
            group_wait: Duration::from_millis(2000),
            model: serde_json::Value::Null,
        }
    }
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("max_batch", &self.max_batch)
            .field("max_wait", &self.max_wait)
            .field("max_queue", &self.max_queue)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_body_memory", &self.max_body_memory)
            .field("max_chars", &self.max_chars)
            .field("ranking", &self.ranking)
            .field("api_key", &self.api_key.as_ref().map(|_| "<hidden>"))
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("group_size", &self.group_size)
            .field("group_wait", &self.group_wait)
            .field("model", &self.model)
            .finish()
    }
}

/// A running server: its address, and a way to stop it.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: JoinHandle<Result<Stopped>>,
}

/// How the server thread ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// The judge finished its work and its thread exited.
    WithTheJudge,
    /// The shutdown deadline passed with the judge still computing; its thread was left running.
    WithoutTheJudge,
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
        join(self.thread).map(|_| ())
    }
}

/// Serve until SIGINT or SIGTERM, then shut down gracefully.
///
/// If the judge is still computing at the shutdown deadline, the process ends at once with
/// status 0 ([`crate::interrupt::exit_now`]): the exit handlers of a native library still in
/// use (OpenBLAS joins its thread pool) could otherwise wait on it forever.
pub fn serve<F, J>(factory: F, config: ServeConfig) -> Result<()>
where
    F: FnOnce() -> Result<J> + Send + 'static,
    J: Judge + 'static,
{
    let (addr, thread) = launch(factory, config, crate::interrupt::termination_signal())?;
    eprintln!("gram serve: listening on http://{addr}");
    match join(thread)? {
        Stopped::WithTheJudge => Ok(()),
        Stopped::WithoutTheJudge => crate::interrupt::exit_now(0),
    }
}

/// Wait for the server or worker thread; a panic there becomes an error.
fn join<T>(thread: JoinHandle<Result<T>>) -> Result<T> {
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
) -> Result<(SocketAddr, JoinHandle<Result<Stopped>>)>
where
    F: FnOnce() -> Result<J> + Send + 'static,
    J: Judge + 'static,
{
    if config.max_batch == 0 || config.max_queue == 0 {
        return Err(Error::invalid(
            "--max-batch and --max-queue must be at least 1",
        ));
    }
    if config.api_key.as_deref() == Some("") {
        return Err(Error::invalid("the API key must not be empty"));
    }
    if config.max_body_memory < config.max_body_bytes {
        return Err(Error::invalid(
            "--max-body-memory must be at least --max-body-bytes",
        ));
    }
    if config.max_connections == 0 {
        return Err(Error::invalid("--max-connections must be at least 1"));
    }
    for (flag, timeout) in [
        ("--request-timeout-secs", config.request_timeout),
        ("--header-timeout-secs", config.header_timeout),
        ("--body-timeout-secs", config.body_timeout),
        ("--send-timeout-secs", config.send_timeout),
    ] {
        if timeout.is_zero() {
            return Err(Error::invalid(format!("{flag} must be at least 1")));
        }
    }
    let most = config.ranking.max_round_robin_responses;
    if config.group_size == 0 || config.group_size > most {
        return Err(Error::invalid(format!(
            "--group-size must be between 1 and {most} (--max-responses for round-robin)"
        )));
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
    if config.api_key.is_none() && !addr.ip().is_loopback() {
        eprintln!(
            "gram serve: WARNING: listening on {addr}, beyond this machine, without an API key: \
             anyone who can reach it can use the judge (set --api-key or GRAM_API_KEY)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::invalid(format!("cannot start the async runtime: {e}")))?;
    let thread = std::thread::spawn(move || {
        let metrics = Arc::new(metrics::Metrics::default());
        let batcher::Worker {
            queue,
            ready,
            load_failure,
            thread: worker,
        } = batcher::spawn(factory, &config, metrics.clone());
        let config = Arc::new(config);
        let groups = (config.group_size > 1)
            .then(|| Arc::new(groups::Groups::new(config.group_size, config.group_wait)));
        let app = routes::router(AppState {
            queue,
            ready,
            limits: config.clone(),
            groups,
            metrics,
        });
        let served = runtime.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let stop = async move {
                tokio::select! {
                    _ = stop => {}
                    Ok(()) = load_failure => {}
                }
            };
            Ok::<_, std::io::Error>(connections::serve(listener, app, &config, stop).await)
        });
        // Dropping the connections still open at the deadline drops their handlers, which
        // cancels their work; with the router gone too the worker drains and exits.
        runtime.shutdown_background();
        let shutdown =
            served.map_err(|e| Error::invalid(format!("the HTTP server failed: {e}")))?;
        if shutdown.dropped > 0 {
            eprintln!(
                "gram serve: {} connections were still busy at the shutdown deadline ({} s); \
                 closed them",
                shutdown.dropped,
                config.shutdown_timeout.as_secs_f64()
            );
        }
        while !worker.is_finished() && Instant::now() < shutdown.deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if worker.is_finished() {
            join(worker).map(|()| Stopped::WithTheJudge)
        } else {
            eprintln!(
                "gram serve: the judge was still busy at the shutdown deadline; stopping without it"
            );
            Ok(Stopped::WithoutTheJudge)
        }
    });
    Ok((addr, thread))
}
