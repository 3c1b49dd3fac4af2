//! The judge worker and dynamic batching.
//!
//! The judge (a model on one device) is not shareable between threads, so it lives on ONE
//! dedicated worker thread, built there by a factory closure. Handlers put *jobs* — a list of
//! pairs and a reply channel — on a bounded [`Queue`]. The worker takes the first job, then keeps
//! collecting jobs for up to `max_wait` or until `max_batch` pairs, and judges them all in one
//! [`Judge::judge`] call. A job is never mixed with others when it is larger than `max_batch`:
//! it is judged on its own, `max_batch` pairs per call, and abandoned between calls once its
//! request gives up (client gone, deadline passed) — so no judge call holds more than
//! `max_batch` pairs, and a long request stops consuming the judge soon after its client leaves.
//! If a batch of several jobs fails, each job is judged again alone, so a bad request fails only
//! itself.

use super::ServeConfig;
use super::metrics::Metrics;
use crate::error::panic_message;
use crate::{Error, Judge, Pair, Result, Verdict};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What a job gets back: one verdict per pair, or why not.
type Answer = Result<Vec<Verdict>, Failure>;

/// Pairs to judge and where to send the verdicts.
struct Job {
    pairs: Vec<Pair>,
    reply: oneshot::Sender<Answer>,
    /// Raised when the request that queued the job has given up (deadline passed, client gone).
    cancelled: Arc<AtomicBool>,
    /// When it was queued.
    queued_at: Instant,
}

impl Job {
    /// Whether nobody waits for this job's verdicts any more.
    fn abandoned(&self) -> bool {
        self.reply.is_closed() || self.cancelled.load(Ordering::SeqCst)
    }
}

/// Why a job got no verdicts.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    /// The queue was full.
    Busy,
    /// The worker has stopped (shutting down, or the judge failed to load).
    Unavailable,
    /// The judge returned an error.
    Judge(String),
    /// The judge panicked.
    Panic(String),
    /// The request gave up (its deadline passed) before its pairs were judged.
    Cancelled,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Busy => f.write_str("the judge queue is full; retry later"),
            Failure::Unavailable => f.write_str("the judge is not running"),
            Failure::Judge(message) => write!(f, "judge error: {message}"),
            Failure::Panic(message) => write!(f, "the judge panicked: {message}"),
            Failure::Cancelled => f.write_str("the request's deadline passed"),
        }
    }
}

/// The sending side of the worker's bounded job queue, and the metrics it keeps; cheap to
/// clone.
#[derive(Clone)]
pub(super) struct Queue(SyncSender<Job>, Arc<Metrics>);

impl Queue {
    /// Queue `pairs` without waiting; [`Failure::Busy`] if the queue is full. The worker skips
    /// the job if `cancelled` is raised (or the answer dropped) before its batch is judged.
    fn submit(
        &self,
        pairs: Vec<Pair>,
        cancelled: Arc<AtomicBool>,
    ) -> Result<oneshot::Receiver<Answer>, Failure> {
        let (reply, answer) = oneshot::channel();
        match self.0.try_send(Job {
            pairs,
            reply,
            cancelled,
            queued_at: Instant::now(),
        }) {
            Ok(()) => {
                self.1.queued(1);
                Ok(answer)
            }
            Err(TrySendError::Full(_)) => Err(Failure::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Failure::Unavailable),
        }
    }

    /// Queue `pairs` and await their verdicts (from async code). Dropping the future (request
    /// deadline, client gone) drops the answer, and a job still queued is then not judged.
    pub(super) async fn judge(&self, pairs: Vec<Pair>) -> Answer {
        self.submit(pairs, Arc::default())?
            .await
            .unwrap_or(Err(Failure::Unavailable))
    }

    /// Queue `pairs` and block until their verdicts arrive (from a blocking thread).
    fn judge_blocking(&self, pairs: Vec<Pair>, cancelled: Arc<AtomicBool>) -> Answer {
        self.submit(pairs, cancelled)?
            .blocking_recv()
            .unwrap_or(Err(Failure::Unavailable))
    }
}

/// A running worker, as [`spawn`] returns it.
pub(super) struct Worker {
    /// Where handlers queue their pairs.
    pub queue: Queue,
    /// Raised once the judge is loaded.
    pub ready: Arc<AtomicBool>,
    /// Resolves with `Ok(())` if loading the judge failed, with an error once it succeeded.
    pub load_failure: oneshot::Receiver<()>,
    /// The worker thread; its result is the factory's error, if any. It ends once every
    /// [`Queue`] is dropped and the jobs left are answered.
    pub thread: JoinHandle<Result<()>>,
}

/// Start the worker thread: build the judge with `factory` (panics caught), then serve jobs
/// with the batching and queue bound of `config`, recording into `metrics`.
pub(super) fn spawn<F, J>(factory: F, config: &ServeConfig, metrics: Arc<Metrics>) -> Worker
where
    F: FnOnce() -> Result<J> + Send + 'static,
    J: Judge + 'static,
{
    let (queue, jobs) = sync_channel::<Job>(config.max_queue);
    let ready = Arc::new(AtomicBool::new(false));
    let (load_failed, load_failure) = oneshot::channel::<()>();
    let batching = (config.max_batch, config.max_wait);
    let worker_ready = ready.clone();
    let worker_metrics = metrics.clone();
    let thread = std::thread::spawn(move || {
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
                    panic_message(&*panic)
                )));
            }
        };
        drop(load_failed);
        worker_ready.store(true, Ordering::SeqCst);
        work(&mut judge, jobs, batching, &worker_metrics);
        Ok(())
    });
    Worker {
        queue: Queue(queue, metrics),
        ready,
        load_failure,
        thread,
    }
}

/// The worker loop: collect a batch, judge it in one call, answer every job; until the queue's
/// senders are all gone.
fn work(
    judge: &mut dyn Judge,
    jobs: Receiver<Job>,
    (max_batch, max_wait): (usize, Duration),
    metrics: &Metrics,
) {
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
        judge_batch(judge, batch, max_batch, metrics);
    }
}

/// Judge all jobs' pairs in one call (a lone job over `max_batch` pairs in several, see
/// [`judge_alone`]); if that fails and there were several jobs, judge each job alone so the
/// failure reaches only the job that caused it.
fn judge_batch(judge: &mut dyn Judge, batch: Vec<Job>, max_batch: usize, metrics: &Metrics) {
    let start = Instant::now();
    for job in &batch {
        metrics.queued(-1);
        metrics.waited(start - job.queued_at);
    }
    // Requests whose clients have gone, or whose deadline passed, need no verdicts; dropping
    // their jobs answers them `Unavailable` (nobody reads it).
    let mut batch: Vec<Job> = batch.into_iter().filter(|job| !job.abandoned()).collect();
    if batch.len() == 1 && batch[0].pairs.len() > max_batch {
        return judge_alone(judge, batch.pop().expect("one job"), max_batch, metrics);
    }
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
    match judge_guarded(judge, &pairs, metrics) {
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
                let answer = judge_guarded(judge, &job.pairs, metrics);
                let _ = job.reply.send(answer);
            }
        }
    }
}

/// Judge one job `max_batch` pairs per call, and stop without answering once it is abandoned.
fn judge_alone(judge: &mut dyn Judge, job: Job, max_batch: usize, metrics: &Metrics) {
    let mut verdicts = Vec::with_capacity(job.pairs.len());
    for chunk in job.pairs.chunks(max_batch) {
        if job.abandoned() {
            return;
        }
        match judge_guarded(judge, chunk, metrics) {
            Ok(chunk_verdicts) => verdicts.extend(chunk_verdicts),
            Err(failure) => {
                let _ = job.reply.send(Err(failure));
                return;
            }
        }
    }
    let _ = job.reply.send(Ok(verdicts));
}

/// One judge call with panics caught and the verdict count checked, timed into `metrics`.
///
/// After a panic the same judge serves the next batch. That is sound for a judge whose state
/// cannot be left half-updated: [`crate::judge::GramJudge`]'s only state besides its
/// statistics is its cached instruction prefix, stored only once computed in full.
fn judge_guarded(judge: &mut dyn Judge, pairs: &[Pair], metrics: &Metrics) -> Answer {
    let (start, tokens_before) = (Instant::now(), judge.tokens_judged());
    let outcome = catch_unwind(AssertUnwindSafe(|| judge.judge(pairs)));
    let tokens = judge
        .tokens_judged()
        .zip(tokens_before)
        .map(|(after, before)| after.saturating_sub(before));
    metrics.judged(pairs.len(), start.elapsed(), tokens);
    match outcome {
        Ok(Ok(verdicts)) if verdicts.len() == pairs.len() => Ok(verdicts),
        Ok(Ok(verdicts)) => Err(Failure::Judge(format!(
            "the judge returned {} verdicts for {} pairs",
            verdicts.len(),
            pairs.len()
        ))),
        Ok(Err(error)) => Err(Failure::Judge(error.to_string())),
        Err(panic) => {
            let message = panic_message(&*panic);
            eprintln!(
                "gram serve: the judge panicked on a batch of {} pairs: {message}",
                pairs.len()
            );
            Err(Failure::Panic(message))
        }
    }
}

/// A [`Judge`] for blocking threads that hands its pairs to the worker and waits, so library
/// code (ranking, rewards) is batched with everyone else's requests.
pub(super) struct QueueJudge {
    queue: Queue,
    /// Raised when the request gave up: later calls fail, queued jobs are skipped.
    cancelled: Arc<AtomicBool>,
    /// The first failure, to answer with the right status.
    failure: Option<Failure>,
}

impl QueueJudge {
    pub(super) fn new(queue: Queue, cancelled: Arc<AtomicBool>) -> Self {
        QueueJudge {
            queue,
            cancelled,
            failure: None,
        }
    }

    /// The first failure of the worker on this judge's pairs, if any.
    pub(super) fn failure(self) -> Option<Failure> {
        self.failure
    }
}

impl Judge for QueueJudge {
    fn judge(&mut self, pairs: &[Pair]) -> Result<Vec<Verdict>> {
        let answer = if self.cancelled.load(Ordering::SeqCst) {
            Err(Failure::Cancelled)
        } else {
            self.queue
                .judge_blocking(pairs.to_vec(), self.cancelled.clone())
        };
        answer.map_err(|failure| {
            let error = Error::invalid(failure.to_string());
            self.failure.get_or_insert(failure);
            error
        })
    }
}
