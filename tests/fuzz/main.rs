//! Fuzzing the readers of untrusted input on stable Rust: a fixed-seed mutation loop per target
//! that starts from valid inputs, mutates them ([`mutate`]) and calls the real library entry
//! points (`targets.rs`), catching panics, timing every execution and refusing any single
//! allocation over [`MAX_ALLOCATION`] bytes (which aborts the process naming the target and the
//! execution, where an unbounded allocation would take a server down).
//!
//! Each target is one test; by default it runs a short smoke campaign (a few hundred
//! executions, seconds in total). Longer campaigns:
//!
//! ```text
//! GRAM_FUZZ_EXECS=200000 GRAM_FUZZ_SEED=7 cargo test --test fuzz -- --test-threads=1 --nocapture
//! ```
//!
//! `GRAM_FUZZ_EXECS` is the executions per target, `GRAM_FUZZ_SEED` the campaign's seed
//! (execution `i` of target `t` is a pure function of the seed, `t` and `i`, so any finding is
//! reproduced by rerunning with the same values). An execution that panics is a finding; its
//! input is saved under the target directory's `fuzz-findings/` and named in the failure. An
//! execution still running after `GRAM_FUZZ_TIMEOUT_MS` (default 10,000) is a hang: the test
//! fails at once, naming the saved input. Inputs a target accepts join its pool of parents
//! (up to [`POOL`]), so mutations reach past the first check.

#[path = "../common/mod.rs"]
mod common;
mod mutate;
mod targets;

use mutate::{Shape, mutate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest single allocation a target may make: 256 MiB, far beyond what any reader needs
/// for the kilobyte-sized inputs here, far below what would exhaust the machine.
const MAX_ALLOCATION: usize = 256 << 20;

/// Most accepted inputs kept as parents per target.
const POOL: usize = 256;

thread_local! {
    /// The target and execution running on this thread, for the allocation report.
    static RUNNING: Cell<(&'static str, u64)> = const { Cell::new(("", 0)) };
    /// The largest allocation this thread has asked for, in bytes.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, refusing allocations over [`MAX_ALLOCATION`] after naming the target
/// and execution that asked (the refusal aborts the process, as a failed allocation does).
struct CappedAllocator;

impl CappedAllocator {
    fn allowed(size: usize) -> bool {
        LARGEST.with(|largest| largest.set(largest.get().max(size)));
        if size <= MAX_ALLOCATION {
            return true;
        }
        let (target, exec) = RUNNING.with(Cell::get);
        eprintln!(
            "fuzz: target {target:?}, execution {exec}: refused an allocation of {size} bytes \
             (limit {MAX_ALLOCATION})"
        );
        false
    }
}

unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::allowed(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !Self::allowed(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !Self::allowed(new_size) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where inputs that found something are saved.
fn findings_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-findings")
}

fn save_finding(target: &str, exec: u64, input: &[u8]) -> PathBuf {
    let dir = findings_dir();
    std::fs::create_dir_all(&dir).expect("create the findings folder");
    let path = dir.join(format!("{target}-{exec}.bin"));
    std::fs::write(&path, input).expect("save a finding");
    path
}

/// Code under test: takes an input, says whether it was accepted.
pub type Run = Box<dyn Fn(&[u8]) -> bool + Send>;

/// A fuzz target: a name, valid inputs to start from, how to mutate them, and the code under
/// test. `run` returns whether the input was accepted (it then becomes a parent).
pub struct Target {
    pub name: &'static str,
    /// The folder `run` writes its input into, if any; removed with the target.
    pub scratch: Option<tempfile::TempDir>,
    pub seeds: Vec<Vec<u8>>,
    pub shape: Shape,
    pub run: Run,
}

/// Keep the panics of fuzzed code quiet (they are findings, reported once per campaign); any
/// other panic, such as a test's failed assertion, is reported as usual.
fn silence_campaign_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if RUNNING.with(Cell::get).0.is_empty() {
                report(info);
            }
        }));
    });
}

/// What the running execution is: its number, its input and when it started.
#[derive(Default)]
struct Current {
    exec: u64,
    input: Vec<u8>,
    started: Option<Instant>,
}

/// Run `target` for `GRAM_FUZZ_EXECS` executions (default `smoke`) and fail on any panic or
/// hang, naming the saved inputs. Prints the executions per second.
pub fn fuzz(target: Target, smoke: u64) {
    let execs = env_u64("GRAM_FUZZ_EXECS", smoke);
    let seed = env_u64("GRAM_FUZZ_SEED", 0);
    let timeout = Duration::from_millis(env_u64("GRAM_FUZZ_TIMEOUT_MS", 10_000));
    let name = target.name;
    silence_campaign_panics();
    let current = Arc::new(Mutex::new(Current::default()));
    let worker = {
        let current = current.clone();
        std::thread::spawn(move || campaign(target, execs, seed, &current))
    };
    let start = Instant::now();
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        let now = current.lock().unwrap();
        if let Some(started) = now.started.filter(|s| s.elapsed() > timeout) {
            let path = save_finding(name, now.exec, &now.input);
            panic!(
                "fuzz {name}: execution {} ran for {:?} (limit {timeout:?}); input saved to {}",
                now.exec,
                started.elapsed(),
                path.display()
            );
        }
    }
    let Campaign {
        accepted,
        largest,
        findings,
    } = worker.join().expect("the campaign does not panic");
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {name}: {execs} executions in {seconds:.1} s ({:.0}/s), seed {seed}, {accepted} \
         accepted, largest allocation {:.1} MiB, {} findings",
        execs as f64 / seconds,
        largest as f64 / (1 << 20) as f64,
        findings.len()
    );
    assert!(
        findings.is_empty(),
        "fuzz {name}: {} panics, the first:\n{}",
        findings.len(),
        findings[..findings.len().min(10)].join("\n")
    );
}

/// What a campaign found: how many inputs the target accepted, the largest single allocation
/// (bytes) of the campaign's thread, and each panic.
struct Campaign {
    accepted: u64,
    largest: usize,
    findings: Vec<String>,
}

/// The mutation loop: each execution's random stream is seeded by (seed, target, execution).
fn campaign(target: Target, execs: u64, seed: u64, current: &Mutex<Current>) -> Campaign {
    let tag = target
        .name
        .bytes()
        .fold(0u64, |h, b| h.rotate_left(5) ^ b as u64);
    let mut pool = target.seeds.clone();
    let (mut accepted, mut findings) = (0, Vec::new());
    for exec in 0..execs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ tag.rotate_left(32) ^ exec);
        let parent = &pool[rng.random_range(0..pool.len())];
        let input = mutate(&mut rng, parent, target.shape);
        {
            let mut now = current.lock().unwrap();
            now.exec = exec;
            now.input.clone_from(&input);
            now.started = Some(Instant::now());
        }
        RUNNING.with(|r| r.set((target.name, exec)));
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        RUNNING.with(|r| r.set(("", exec)));
        current.lock().unwrap().started = None;
        accepted += matches!(outcome, Ok(true)) as u64;
        match outcome {
            Ok(true) if pool.len() < POOL => pool.push(input),
            Ok(true) => {
                let slot = rng.random_range(target.seeds.len()..POOL);
                pool[slot] = input;
            }
            Ok(false) => {}
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let path = save_finding(target.name, exec, &input);
                findings.push(format!("execution {exec}: {message} ({})", path.display()));
            }
        }
    }
    Campaign {
        accepted,
        largest: LARGEST.with(Cell::get),
        findings,
    }
}

#[test]
fn gguf() {
    fuzz(targets::gguf(), 400);
}

#[test]
fn safetensors() {
    fuzz(targets::safetensors(), 200);
}

#[test]
fn safetensors_index() {
    fuzz(targets::safetensors_index(), 200);
}

#[test]
fn config() {
    fuzz(targets::config(), 2000);
}

#[test]
fn tokenizer_json() {
    fuzz(targets::tokenizer_json(), 200);
}

#[test]
fn tokenizer_config() {
    fuzz(targets::tokenizer_config(), 200);
}

#[test]
fn chat_template() {
    fuzz(targets::chat_template(), 300);
}

/// Found by the `tokenizer_json` target: the `tokenizers` library panics (`expect("Helper")`)
/// on JSON broken inside `decoder` (2,067 of 100,000 mutants). Loading answers with an error
/// naming `tokenizer.json` instead, for that and for a well-formed decoder of the wrong shape.
#[test]
fn a_tokenizer_json_with_a_malformed_decoder_is_an_error() {
    let (_scratch, dir, _) = targets::hf_folder("malformed-decoder");
    let path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["decoder"] = serde_json::json!({ "type": 5 });
    let broken_syntax = text.replacen("\"decoder\":{", "\"decoder\":{]", 1);
    assert_ne!(
        broken_syntax, text,
        "the decoder is where the test expects it"
    );
    for (case, contents) in [
        ("wrong shape", json.to_string()),
        ("broken JSON", broken_syntax),
    ] {
        std::fs::write(&path, contents).unwrap();
        let error = match gram::checkpoint::Checkpoint::load(&dir) {
            Ok(_) => panic!("{case}: loaded"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("tokenizer.json"), "{case}: {error}");
    }
}

/// Each hostile fragment alone, as a whole chat template, renders or fails cleanly: endless
/// loops run out of fuel, huge strings and ranges are refused, before any large allocation.
#[test]
fn hostile_chat_template_fragments_fail_cleanly() {
    let target = targets::chat_template();
    for fragment in targets::JINJA {
        let started = Instant::now();
        (target.run)(fragment.as_bytes());
        assert!(started.elapsed() < Duration::from_secs(10), "{fragment}");
    }
}

#[test]
fn judge_template() {
    fuzz(targets::judge_template(), 2000);
}

#[test]
fn data_formats() {
    for target in targets::data_formats() {
        fuzz(target, 300);
    }
}

#[test]
fn model_outputs() {
    fuzz(targets::model_outputs(), 300);
}
