//! `GET /metrics`: the server's counters in the Prometheus text exposition format (0.0.4).
//!
//! Written by hand rather than with a metrics crate: a handful of counters, one gauge and three
//! histograms need no dependency (and so change no shared dependency features).
//!
//! | metric | type | what |
//! |---|---|---|
//! | `gram_requests_total{endpoint, status}` | counter | answered requests |
//! | `gram_queue_depth` | gauge | judge jobs waiting in the queue now |
//! | `gram_batch_pairs` | histogram | pairs per judge call |
//! | `gram_queue_seconds` | histogram | a job's wait from queueing to its batch's start |
//! | `gram_judge_seconds` | histogram | one judge call (a batch), wall time |
//! | `gram_pairs_judged_total` | counter | pairs judged (each is two forward sequences) |
//! | `gram_tokens_judged_total` | counter | judge-input tokens (both orders); tokens/s = its `rate()` |
//! | `gram_tokens_per_second` | gauge | tokens of the last judge call over its wall time |

use super::routes::AppState;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histograms, in seconds.
const SECONDS_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// Upper bounds of the batch-size histogram, in pairs.
const PAIRS_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A cumulative histogram: counts per upper bound, their sum and count.
struct Histogram {
    bounds: &'static [f64],
    state: Mutex<(Vec<u64>, f64, u64)>,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            state: Mutex::new((vec![0; bounds.len()], 0.0, 0)),
        }
    }

    fn observe(&self, value: f64) {
        let mut state = self.state.lock().expect("metrics are never poisoned");
        for (count, bound) in state.0.iter_mut().zip(self.bounds) {
            *count += u64::from(value <= *bound);
        }
        state.1 += value;
        state.2 += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let (buckets, sum, count) = self
            .state
            .lock()
            .expect("metrics are never poisoned")
            .clone();
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, n) in self.bounds.iter().zip(buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Everything `/metrics` reports; shared by the handlers and the judge worker.
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    queue_depth: AtomicI64,
    batch_pairs: Histogram,
    queue_seconds: Histogram,
    judge_seconds: Histogram,
    pairs_judged: AtomicU64,
    tokens_judged: AtomicU64,
    /// f64 bits of the last judge call's tokens per second.
    tokens_per_second: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            queue_depth: AtomicI64::new(0),
            batch_pairs: Histogram::new(&PAIRS_BUCKETS),
            queue_seconds: Histogram::new(&SECONDS_BUCKETS),
            judge_seconds: Histogram::new(&SECONDS_BUCKETS),
            pairs_judged: AtomicU64::new(0),
            tokens_judged: AtomicU64::new(0),
            tokens_per_second: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// A job entered (+1) or left (−1) the queue.
    pub(super) fn queued(&self, change: i64) {
        self.queue_depth.fetch_add(change, Ordering::SeqCst);
    }

    /// A job waited `wait` in the queue before its batch started.
    pub(super) fn waited(&self, wait: Duration) {
        self.queue_seconds.observe(wait.as_secs_f64());
    }

    /// One judge call: `pairs` pairs in `took`, `tokens` judge-input tokens if the judge counts
    /// them.
    pub(super) fn judged(&self, pairs: usize, took: Duration, tokens: Option<u64>) {
        self.batch_pairs.observe(pairs as f64);
        self.judge_seconds.observe(took.as_secs_f64());
        self.pairs_judged.fetch_add(pairs as u64, Ordering::SeqCst);
        if let Some(tokens) = tokens {
            self.tokens_judged.fetch_add(tokens, Ordering::SeqCst);
            let rate = tokens as f64 / took.as_secs_f64().max(1e-9);
            self.tokens_per_second
                .store(rate.to_bits(), Ordering::SeqCst);
        }
    }

    /// The exposition text.
    pub(super) fn render(&self) -> String {
        let mut out = String::new();
        out += "# HELP gram_requests_total Requests answered, by endpoint and status.\n\
                # TYPE gram_requests_total counter\n";
        for ((endpoint, status), n) in self.requests.lock().expect("never poisoned").iter() {
            let _ = writeln!(
                out,
                "gram_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        let gauge = |out: &mut String, name: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "gram_queue_depth",
            "Judge jobs waiting in the queue.",
            self.queue_depth.load(Ordering::SeqCst).to_string(),
        );
        self.batch_pairs
            .render(&mut out, "gram_batch_pairs", "Pairs per judge call.");
        self.queue_seconds.render(
            &mut out,
            "gram_queue_seconds",
            "Seconds a job waited in the queue before its batch started.",
        );
        self.judge_seconds
            .render(&mut out, "gram_judge_seconds", "Seconds per judge call.");
        counter(
            &mut out,
            "gram_pairs_judged_total",
            "Pairs judged (both orders each).",
            self.pairs_judged.load(Ordering::SeqCst),
        );
        counter(
            &mut out,
            "gram_tokens_judged_total",
            "Judge-input tokens, both orders.",
            self.tokens_judged.load(Ordering::SeqCst),
        );
        gauge(
            &mut out,
            "gram_tokens_per_second",
            "Tokens per second of the last judge call.",
            f64::from_bits(self.tokens_per_second.load(Ordering::SeqCst)).to_string(),
        );
        out
    }
}

/// Middleware: count every answered request by its route and status.
pub(super) async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Only the server's own paths become labels, so clients cannot grow the series.
    let path = request.uri().path();
    let endpoint = super::routes::ENDPOINTS
        .iter()
        .find(|&&known| known == path)
        .map_or("(unmatched)", |known| known)
        .to_owned();
    let response = next.run(request).await;
    let key = (endpoint, response.status().as_u16());
    *state
        .metrics
        .requests
        .lock()
        .expect("never poisoned")
        .entry(key)
        .or_default() += 1;
    response
}

/// `GET /metrics`.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
