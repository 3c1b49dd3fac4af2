//! `gram serve`: the judge over HTTP with dynamic batching (see [`gram::serve`]).

use super::common::{JudgeArgs, RankLimitArgs};
use gram::Result;
use gram::serve::{ServeConfig, serve};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// TCP port (0 = any free port).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Most pairs judged in one call (1 = no batching).
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Milliseconds to wait, after a request arrives, for others to batch with it.
    #[arg(long, default_value_t = 10)]
    pub max_wait_ms: u64,
    /// Requests that may wait for the judge; beyond that 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// Most bytes of request bodies in memory at once, all requests together (each reserves
    /// its Content-Length until answered; 503 with Retry-After beyond).
    #[arg(long, default_value_t = 256 << 20)]
    pub max_body_memory: usize,
    /// Longest prompt or response in characters (400 beyond).
    #[arg(long, default_value_t = 32_768)]
    pub max_chars: usize,
    #[command(flatten)]
    pub limits: RankLimitArgs,
    /// Require `Authorization: Bearer KEY` on every endpoint but `GET /health` (401 otherwise)
    /// [default: the environment variable GRAM_API_KEY, if set].
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Seconds a request may take, queueing included (504 beyond; its queued work is dropped).
    #[arg(long, default_value_t = 600)]
    pub request_timeout_secs: u64,
    /// Most connections open at once; further clients wait until one closes.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, counted from connecting or from its
    /// previous response (so idle keep-alive connections close after it too).
    #[arg(long, default_value_t = 30)]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's body once its headers are in (408 beyond).
    #[arg(long, default_value_t = 60)]
    pub body_timeout_secs: u64,
    /// Seconds a response may wait for the client to read any of it; then the connection is
    /// dropped.
    #[arg(long, default_value_t = 60)]
    pub send_timeout_secs: u64,
    /// After SIGTERM or Ctrl-C, seconds requests in flight may still take; then the server
    /// exits without them.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout_secs: u64,
    /// Rank K unlabeled `/get_reward` samples of the same prompt together across requests
    /// (OpenRLHF sends one sample per request); 1 = each request on its own.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub group_size: usize,
    /// Milliseconds a rollout group waits for its K samples after its first; then it is ranked
    /// with those it has.
    #[arg(long, default_value_t = 2000, value_name = "W")]
    pub group_wait_ms: u64,
}

pub fn run(args: Args) -> Result<()> {
    let config = ServeConfig {
        host: args.host,
        port: args.port,
        max_batch: args.max_batch,
        max_wait: Duration::from_millis(args.max_wait_ms),
        max_queue: args.max_queue,
        max_body_bytes: args.max_body_bytes,
        max_body_memory: args.max_body_memory,
        max_chars: args.max_chars,
        ranking: args.limits.limits(),
        api_key: args
            .api_key
            .or_else(|| std::env::var("GRAM_API_KEY").ok())
            .filter(|key| !key.is_empty()),
        request_timeout: Duration::from_secs(args.request_timeout_secs),
        max_connections: args.max_connections,
        header_timeout: Duration::from_secs(args.header_timeout_secs),
        body_timeout: Duration::from_secs(args.body_timeout_secs),
        send_timeout: Duration::from_secs(args.send_timeout_secs),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_secs),
        group_size: args.group_size,
        group_wait: Duration::from_millis(args.group_wait_ms),
        model: args.judge.describe()?,
    };
    let judge = args.judge;
    serve(move || judge.load(), config)
}
