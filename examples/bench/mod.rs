//! What the benchmarks (`judge_bench`, `train_bench`, `attention_bench`) share: command-line
//! arguments, the held-out HH-RLHF pairs, the device's measured matmul rate, the process's peak
//! memory, and [`Torch`], the transformers + PyTorch side (`scripts/torch_bench.py`) run as a
//! child process on the same token ids, interleaved round by round with gram's side.

#![allow(dead_code)] // each benchmark uses a different part

use burn::tensor::{Device, Distribution, FloatDType, Tensor};
use gram::Preference;
use gram::data::{self, Content, Format};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

/// Errors of the benchmarks: gram's, I/O, JSON, or a message.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The value after `name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `name`'s value parsed, or `default`; a value that does not parse is an error naming the flag.
pub fn arg_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match arg(name) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| format!("{name}: cannot parse {s:?}").into()),
    }
}

/// Whether `name` is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// `--model`, by default the SmolLM2-135M-Instruct Q4_1 GGUF that scripts/fetch-model.sh fetches.
pub fn model_path() -> PathBuf {
    arg("--model").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var("HOME").unwrap_or_default();
        PathBuf::from(home).join(".cache/gram/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    })
}

/// `path` inside the shared data directory: `$GRAM_SHARED`, default `../shared`.
fn shared_data(path: &str) -> PathBuf {
    let shared = std::env::var("GRAM_SHARED").unwrap_or_else(|_| "../shared".into());
    PathBuf::from(shared).join("data").join(path)
}

/// The first `n` labeled pairs of HH-RLHF helpful-base's test split ([`shared_data`]).
pub fn hh_pairs(n: usize) -> Result<Vec<Preference>> {
    let file = shared_data("hh-rlhf/helpful-base.test.jsonl.gz");
    data::open(&file, Format::Hh)?
        .take(n)
        .map(|r| match r?.content {
            Content::Preference(p) => Ok(p),
            _ => Err(format!("{}: not a preference row", file.display()).into()),
        })
        .collect()
}

/// The comparisons of RM-Bench rows ([`shared_data`] `rm-bench/`), chosen response as A: rows
/// taken from its four domain files in turn (chat, code, safety-refuse, safety-response), each
/// row's 3 × 3 grid of chosen and rejected styles whole, until there are at least `n`.
pub fn rm_bench_pairs(n: usize) -> Result<Vec<gram::Pair>> {
    let scorer = gram::eval::scorer_for(Format::RmBench);
    let mut domains = Vec::new();
    for domain in ["chat", "code", "safety-refuse", "safety-response"] {
        let file = shared_data(&format!("rm-bench/{domain}.json"));
        domains.push(data::read_preferences(&file, Format::RmBench)?.into_iter());
    }
    let mut pairs = Vec::new();
    while pairs.len() < n {
        let before = pairs.len();
        for rows in &mut domains {
            if let Some(record) = rows.next()
                && pairs.len() < n
            {
                pairs.extend(scorer.comparisons(&record));
            }
        }
        if pairs.len() == before {
            return Err(format!("RM-Bench has fewer than {n} comparisons").into());
        }
    }
    Ok(pairs)
}

/// Seconds of the best of five `n × n` by `n × n` matmuls in `dtype` on `device` (after a
/// warm-up), each summed and its sum read as a number. The product is the one gram's
/// projections use ([`gram::matmul::linear`]: the system's BLAS for f32 on `cpu` where one is
/// installed, burn's matmul otherwise).
///
/// On wgpu, `into_data()` returns before the device has finished: only reading the elements
/// (`to_vec`) waits. A probe that stopped the clock at `into_data()` reported 30,000 GFLOP/s on
/// lavapipe.
pub fn matmul_seconds(device: &Device, n: usize, dtype: FloatDType) -> f64 {
    let a = Tensor::<2>::random([n, n], Distribution::Default, device).cast(dtype);
    let b = Tensor::<2>::random([n, n], Distribution::Default, device).cast(dtype);
    let product = || {
        let sum = gram::matmul::linear(a.clone(), b.clone(), None)
            .sum()
            .cast(FloatDType::F32);
        let _ = sum.into_data().try_to_vec::<f32>();
    };
    product(); // warm-up (and autotune)
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        product();
        best = best.min(start.elapsed().as_secs_f64());
    }
    best
}

/// A side's matmul rate: the best `n × n` probe of the whole run. The probe runs before the
/// timed rounds and again after each one, so that one slow moment of a shared machine does not
/// set the yardstick (single probes on the 2-core CI VM ranged from 100 to 230 GFLOP/s).
pub struct MatmulRate {
    n: usize,
    best_seconds: f64,
}

impl MatmulRate {
    /// No probe yet: the rate is NaN (shown as "—") until one is added.
    pub fn new(n: usize) -> Self {
        MatmulRate {
            n,
            best_seconds: f64::NAN,
        }
    }

    /// One more gram probe ([`matmul_seconds`]) in `dtype` on `device`.
    pub fn probe_gram(&mut self, device: &Device, dtype: FloatDType) {
        self.best_seconds = self.best_seconds.min(matmul_seconds(device, self.n, dtype));
    }

    /// One more probe on the PyTorch side, if there is one.
    pub fn probe_torch(&mut self, torch: Option<&mut Torch>) -> Result<()> {
        if let Some(torch) = torch {
            let reply = torch.ask(&format!("matmul {}", self.n))?;
            self.best_seconds = self.best_seconds.min(Torch::number(&reply, "seconds")?);
        }
        Ok(())
    }

    /// GFLOP/s of the best probe so far.
    pub fn gflops(&self) -> f64 {
        matmul_gflops(self.n, self.best_seconds)
    }
}

/// GFLOP/s of an `n × n` matmul that took `seconds`.
pub fn matmul_gflops(n: usize, seconds: f64) -> f64 {
    2.0 * (n as f64).powi(3) / seconds / 1e9
}

/// `x` with `precision` decimals for a table cell, or "—" where there is no number (the
/// PyTorch side under `--no-torch`, and ratios to it).
pub fn cell(x: f64, precision: usize) -> String {
    if x.is_finite() {
        format!("{x:.precision$}")
    } else {
        "—".into()
    }
}

/// An achieved rate and its share of the peak, "12.3 (45%)", or "—" without a number.
pub fn share(achieved: f64, peak: f64) -> String {
    if achieved.is_finite() && peak.is_finite() {
        format!("{achieved:.1} ({:.0}%)", 100.0 * achieved / peak)
    } else {
        "—".into()
    }
}

/// Reset this process's peak resident set (Linux `clear_refs`; a no-op elsewhere).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident set in bytes since the last [`reset_peak_rss`] (0 if unknown).
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The transformers + PyTorch side: `scripts/torch_bench.py` holding the same model, driven one
/// command at a time over its stdin/stdout.
pub struct Torch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Torch {
    /// Start the PyTorch side on `workload` (JSON: the token ids to run), or `None` with the
    /// reason printed when `--no-torch` is given or `torch`, `transformers`, `accelerate` and `gguf` are not
    /// importable.
    pub fn start(model: &Path, workload: &serde_json::Value) -> Result<Option<Torch>> {
        if flag("--no-torch") {
            return Ok(None);
        }
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let importable = Command::new(&python)
            .args(["-c", "import torch, transformers, accelerate, gguf"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !importable {
            println!(
                "PyTorch side skipped: `{python} -c 'import torch, transformers, accelerate, gguf'` failed"
            );
            return Ok(None);
        }
        let file = std::env::temp_dir().join(format!("gram-bench-{}.json", std::process::id()));
        std::fs::write(&file, serde_json::to_vec(workload)?)?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/torch_bench.py");
        let mut child = Command::new(&python)
            .arg(script)
            .arg("--model")
            .arg(model)
            .arg("--workload")
            .arg(&file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut torch = Torch {
            child,
            stdin,
            stdout,
        };
        let ready = torch.line()?;
        let _ = std::fs::remove_file(&file);
        if ready.trim() != "ready" {
            return Err(format!("scripts/torch_bench.py: expected `ready`, got {ready:?}").into());
        }
        Ok(Some(torch))
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err("scripts/torch_bench.py exited early".into());
        }
        Ok(line)
    }

    /// Send one command and read its JSON reply.
    pub fn ask(&mut self, command: &str) -> Result<serde_json::Value> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        let reply: serde_json::Value = serde_json::from_str(&self.line()?)?;
        if let Some(error) = reply.get("error") {
            return Err(format!("scripts/torch_bench.py: {error}").into());
        }
        Ok(reply)
    }

    /// A number in a reply.
    pub fn number(reply: &serde_json::Value, key: &str) -> Result<f64> {
        reply[key]
            .as_f64()
            .ok_or_else(|| format!("scripts/torch_bench.py: no number {key:?} in {reply}").into())
    }
}

impl Drop for Torch {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}
