//! Helpers shared by the integration tests: where the shared data, the default model and the
//! reference fixture are, and the comparison of a model's logits with transformers'
//! ([`check_logits`]).
#![allow(dead_code)] // each test crate uses its own subset of these helpers

pub mod gguf;
pub mod serve_process;

use std::path::PathBuf;

/// The shared read-only data directory: `$GRAM_SHARED`, else `<repo root>/../shared`.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("GRAM_SHARED") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    }
}

/// The default model: `$GRAM_MODEL`, else `~/.cache/gram/models/SmolLM2-135M-Instruct.Q4_1.gguf`.
/// Panics with instructions if it is missing.
pub fn model_path() -> PathBuf {
    let path = match std::env::var_os("GRAM_MODEL") {
        Some(path) => PathBuf::from(path),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/gram/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        }
    };
    assert!(
        path.is_file(),
        "model {} is missing: run scripts/fetch-model.sh or set GRAM_MODEL",
        path.display()
    );
    path
}

/// The reference values `fixtures/smollm2_135m_reference.json` (see fixtures/README.md).
pub fn fixture() -> serde_json::Value {
    let path = shared_dir().join("fixtures/smollm2_135m_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} unreadable ({e}): set GRAM_SHARED to the shared data directory",
            path.display()
        )
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("fixture {} is not JSON: {e}", path.display()))
}

/// Seeded random tensors under every name and stored shape of the weight-layout table for
/// `config` (q/k/v biases, q/k norms and an untied `lm_head` exactly when the config has them).
pub fn tiny_tensors(
    config: &gram::config::ModelConfig,
) -> std::collections::BTreeMap<String, gram::checkpoint::HostTensor> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    gram::model::layout::tensors(config)
        .into_iter()
        .map(|t| {
            let data = (0..t.len())
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            let tensor = gram::checkpoint::HostTensor::new(t.shape, data).expect("sizes agree");
            (t.hf_name, tensor)
        })
        .collect()
}

/// Write `config`'s weights as a bf16 Hugging Face directory in `dir`: `config.json`, one
/// `model.safetensors` written a tensor at a time (host memory stays small however large the
/// model), and the tokenizer of the architecture fixtures. `value(name, i)` is element `i`
/// (row-major, stored layout) of tensor `name`. Returns the safetensors file's size in bytes.
pub fn write_bf16_dir(
    dir: &std::path::Path,
    config: &gram::config::ModelConfig,
    mut value: impl FnMut(&str, usize) -> f32,
) -> u64 {
    use std::io::Write;
    let tensors = gram::model::layout::tensors(config);
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for t in &tensors {
        let end = offset + 2 * t.len();
        let entry =
            serde_json::json!({"dtype": "BF16", "shape": t.shape, "data_offsets": [offset, end]});
        header.insert(t.hf_name.clone(), entry);
        offset = end;
    }
    let header = serde_json::Value::Object(header).to_string();
    let path = dir.join("model.safetensors");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    file.write_all(&(header.len() as u64).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    for t in &tensors {
        for i in 0..t.len() {
            let x = half::bf16::from_f32(value(&t.hf_name, i));
            file.write_all(&x.to_le_bytes()).unwrap();
        }
    }
    file.into_inner().unwrap().sync_all().unwrap();
    let mut json = serde_json::to_value(config).unwrap();
    json.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    let tokenizer = shared_dir().join("fixtures/archs/llama3");
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        std::fs::copy(tokenizer.join(name), dir.join(name)).unwrap();
    }
    std::fs::metadata(&path).unwrap().len()
}

/// Hand-made tensors as a [`gram::checkpoint::Checkpoint`] holds them.
pub fn stored(
    tensors: std::collections::BTreeMap<String, gram::checkpoint::HostTensor>,
) -> std::collections::BTreeMap<String, gram::checkpoint::StoredTensor> {
    tensors.into_iter().map(|(n, t)| (n, t.into())).collect()
}

/// The wgpu device for tests that need one (`gram::device::select("auto")`), or `None` when
/// this machine has no wgpu adapter: the caller then returns early, and one line
/// `skipped: no wgpu adapter ...` naming the test goes to stderr (written past the test
/// harness's capture, so it shows even for a passing test).
///
/// With `GRAM_REQUIRE_GPU=1` (CI sets it) a missing adapter is a failure instead, so CI never
/// skips these tests silently. An adapter that exists but does not initialise always fails.
pub fn wgpu_device() -> Option<burn::tensor::Device> {
    if gram::device::adapters().is_empty() {
        let test = std::thread::current()
            .name()
            .unwrap_or("this test")
            .to_string();
        assert!(
            !require_gpu(),
            "{test}: GRAM_REQUIRE_GPU=1 but there is no wgpu adapter: install a Vulkan driver \
             (Debian/Ubuntu: mesa-vulkan-drivers libvulkan1 for lavapipe; see .ci/install-lavapipe.sh)"
        );
        say_skipped("no wgpu adapter (install mesa-vulkan-drivers)");
        return None;
    }
    Some(
        gram::device::select("auto")
            .unwrap_or_else(|e| panic!("a wgpu adapter is listed but did not initialise: {e}")),
    )
}

/// Whether `GRAM_REQUIRE_GPU=1`: tests that need a wgpu adapter fail instead of skipping.
pub fn require_gpu() -> bool {
    required("GRAM_REQUIRE_GPU")
}

/// Whether the environment variable `var` is `1`: what a test needs must then be present (CI
/// sets `GRAM_REQUIRE_GPU` and `GRAM_REQUIRE_BLAS`), and its absence fails the test.
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v.trim() == "1")
}

/// Whether a system BLAS was loaded ([`gram::matmul::blas`]); without one, a skip (or, under
/// `GRAM_REQUIRE_BLAS=1`, a failure).
pub fn blas_loaded() -> bool {
    use gram::matmul::blas;
    if blas::name().is_some() {
        return true;
    }
    assert!(
        !required("GRAM_REQUIRE_BLAS"),
        "GRAM_REQUIRE_BLAS is set but none of {:?} could be opened (apt-get install libopenblas0)",
        blas::LIBRARIES
    );
    say_skipped("no system BLAS (install libopenblas0)");
    false
}

/// Say on stderr, past the test harness's capture (so it shows for a passing test too), that
/// the current test skipped for `reason`.
pub fn say_skipped(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {reason}: {test}");
}

/// Wait for `child` to exit, at most `limit` (then kill it and fail: a process that ignores the
/// signal it was sent).
pub fn wait_for_exit(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the process is still running {limit:?} after its signal");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Run `command` (stderr captured) and send it SIGINT once `ready()` holds, failing if it
/// exits first or nothing is ready within 10 minutes; returns its stderr once it has exited,
/// after checking that it exited non-zero, as an interrupted run must.
pub fn interrupt_when(command: &mut std::process::Command, ready: impl Fn() -> bool) -> String {
    use std::time::{Duration, Instant};
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = read_stderr(&mut child);
            panic!("exited ({status}) before it was interrupted:\n{stderr}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "not ready to interrupt in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = wait_for_exit(&mut child, Duration::from_secs(300));
    let stderr = read_stderr(&mut child);
    assert!(
        !status.success(),
        "an interrupted run must not exit 0:\n{stderr}"
    );
    stderr
}

/// All of a finished `child`'s captured stderr.
fn read_stderr(child: &mut std::process::Child) -> String {
    let mut stderr = String::new();
    let pipe = child.stderr.as_mut().expect("stderr captured");
    std::io::Read::read_to_string(pipe, &mut stderr).unwrap();
    stderr
}

/// A tiny Llama config (width 32, 4 query / 2 key-value heads, tied embeddings) for training
/// tests on random weights.
pub fn tiny_config(vocab_size: usize, layers: usize) -> gram::config::ModelConfig {
    gram::config::ModelConfig {
        model_type: gram::config::Architecture::Llama,
        vocab_size,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: layers,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: None,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        max_position_embeddings: 128,
        tie_word_embeddings: true,
        attention_bias: false,
        bos_token_id: None,
        eos_token_id: None,
    }
}

/// `pairs` synthetic judge inputs over token ids `3..vocab`, each in both orders:
/// `prompt a 0 b` with verdict A (0) when the chosen segment comes first, B (1) when swapped.
pub fn verdict_data(pairs: usize, vocab: usize, seed: u64) -> Vec<gram::train::TrainExample> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut tokens =
        |n: usize| -> Vec<u32> { (0..n).map(|_| rng.random_range(3..vocab as u32)).collect() };
    let mut out = Vec::new();
    for _ in 0..pairs {
        let (prompt, chosen, rejected) = (tokens(4), tokens(3), tokens(3));
        for (correct, (a, b)) in [(0, (&chosen, &rejected)), (1, (&rejected, &chosen))] {
            let ids = [prompt.clone(), a.clone(), vec![0], b.clone()].concat();
            out.push(gram::train::TrainExample::Verdict { ids, correct });
        }
    }
    out
}

/// Every tensor of an F32 safetensors file (an exported `model.safetensors`): name → (shape, data).
pub fn f32_tensors(
    path: &std::path::Path,
) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}

/// One text and transformers' outputs for it, as the reference fixtures store them.
pub struct ReferenceCase<'a> {
    pub text: &'a str,
    /// The token ids transformers' tokenizer gave `text`.
    pub ids: Vec<u32>,
    /// An object with `last_top20_ids`, `last_top20_logits`, `last_logit_A`, `last_logit_B`,
    /// `argmax_per_position` and `logsumexp_per_position`.
    pub expected: &'a serde_json::Value,
}

impl<'a> ReferenceCase<'a> {
    /// A case object holding `text` and `ids`, with the expected values in `expected`.
    pub fn new(case: &'a serde_json::Value, expected: &'a serde_json::Value) -> Self {
        ReferenceCase {
            text: case["text"].as_str().expect("case text"),
            ids: case["ids"]
                .as_array()
                .expect("case ids")
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect(),
            expected,
        }
    }
}

/// How close a model's logits must come to transformers' ([`check_logits_within`]).
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Largest |logit − reference| of the top-20 and verdict logits and of each position's
    /// log-sum-exp.
    pub logit: f32,
    /// Largest |σ(z_A − z_B) − reference|: the judge's forward-order probability.
    pub verdict_p: f64,
    /// Smallest fraction of positions whose argmax equals the reference's (1: all).
    pub argmax_agreement: f64,
}

impl Tolerance {
    /// Every logit within `logit`, every argmax equal (the f32 comparison).
    pub fn exact(logit: f32) -> Self {
        Tolerance {
            logit,
            verdict_p: logit as f64,
            argmax_agreement: 1.0,
        }
    }
}

/// Check `model` (with its tokenizer `codec`) against transformers on every case: the tokenizer
/// reproduces the ids; the last position's top-20 logits and the logits of `verdict` (the "A"
/// and "B" tokens), and every position's log-sum-exp, are within `tolerance`; every position's
/// argmax is the same. Returns the worst absolute error seen.
pub fn check_logits(
    model: &gram::model::Llama,
    codec: &gram::tokenizer::TextCodec,
    cases: &[ReferenceCase<'_>],
    verdict: [u32; 2],
    tolerance: f32,
) -> f32 {
    check_logits_within(model, codec, cases, verdict, Tolerance::exact(tolerance)).logit
}

/// The worst differences [`check_logits_within`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Worst {
    pub logit: f32,
    pub verdict_p: f64,
    /// Fraction of positions whose argmax differs from the reference's.
    pub argmax_disagreement: f64,
}

/// [`check_logits`] with separate bounds for logits, the verdict probability σ(z_A − z_B) and
/// argmax agreement (for 16-bit weights, whose rounding flips near-ties); returns the worst
/// differences seen.
pub fn check_logits_within(
    model: &gram::model::Llama,
    codec: &gram::tokenizer::TextCodec,
    cases: &[ReferenceCase<'_>],
    verdict: [u32; 2],
    tolerance: Tolerance,
) -> Worst {
    use burn::tensor::{FloatDType, Int, Tensor, TensorData};

    let device = model.device();
    let vocab = model.config.vocab_size;
    let mut worst = Worst::default();
    let (mut positions, mut disagreements) = (0usize, 0usize);
    for case in cases {
        let text = case.text;
        let expected = case.expected;
        let ids = codec.encode(text).unwrap();
        assert_eq!(ids, case.ids, "token ids of {text:?}");
        let t = ids.len();
        let input = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, t]),
            &device,
        );
        // Logits [T, V] read back 256 positions at a time: a whole long text's (~200 MB) is
        // more than one wgpu buffer may hold on lavapipe.
        let hidden = model.hidden_states(input); // [1, T, d]
        let mut logits = Vec::with_capacity(t * vocab);
        for start in (0..t).step_by(256) {
            let chunk = model.logits(hidden.clone().narrow(1, start, 256.min(t - start)));
            let chunk = chunk.cast(FloatDType::F32).into_data();
            logits.extend(chunk.try_to_vec::<f32>().unwrap());
        }
        let mut check = |what: &str, got: f32, want: f64| {
            let err = (got - want as f32).abs();
            worst.logit = worst.logit.max(err);
            assert!(
                err < tolerance.logit,
                "{what} of {text:?}: got {got}, want {want}"
            );
        };
        let last = &logits[(t - 1) * vocab..t * vocab];
        for (id, want) in expected["last_top20_ids"]
            .as_array()
            .unwrap()
            .iter()
            .zip(expected["last_top20_logits"].as_array().unwrap())
        {
            check(
                "top-20 logit",
                last[id.as_u64().unwrap() as usize],
                want.as_f64().unwrap(),
            );
        }
        for (token, key) in verdict.into_iter().zip(["last_logit_A", "last_logit_B"]) {
            check(key, last[token as usize], expected[key].as_f64().unwrap());
        }
        let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
        let p = sigmoid((last[verdict[0] as usize] - last[verdict[1] as usize]) as f64);
        let want_p = sigmoid(
            expected["last_logit_A"].as_f64().unwrap() - expected["last_logit_B"].as_f64().unwrap(),
        );
        worst.verdict_p = worst.verdict_p.max((p - want_p).abs());
        assert!(
            (p - want_p).abs() <= tolerance.verdict_p,
            "σ(z_A − z_B) of {text:?}: got {p}, want {want_p}"
        );
        for p in 0..t {
            let row = &logits[p * vocab..(p + 1) * vocab];
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let lse = max
                + row
                    .iter()
                    .map(|&z| ((z - max) as f64).exp())
                    .sum::<f64>()
                    .ln() as f32;
            check(
                "logsumexp",
                lse,
                expected["logsumexp_per_position"][p].as_f64().unwrap(),
            );
            let argmax = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            let want = expected["argmax_per_position"][p].as_u64().unwrap();
            if tolerance.argmax_agreement >= 1.0 {
                assert_eq!(argmax as u64, want, "argmax at {p} of {text:?}");
            }
            positions += 1;
            disagreements += usize::from(argmax as u64 != want);
        }
    }
    worst.argmax_disagreement = disagreements as f64 / positions.max(1) as f64;
    assert!(
        1.0 - worst.argmax_disagreement >= tolerance.argmax_agreement,
        "argmax differs at {disagreements} of {positions} positions"
    );
    worst
}

/// The labeled pair a record holds (panics otherwise).
pub fn preference(record: &gram::data::Record) -> &gram::Preference {
    match &record.content {
        gram::data::Content::Preference(p) => p,
        other => panic!("expected a preference, got {other:?}"),
    }
}

/// Write `text` to a file named `name` in a fresh temporary directory.
pub fn scratch(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// The line, field and message of a data error.
pub fn data_error(
    result: gram::Result<Vec<gram::data::Record>>,
) -> (Option<usize>, Option<String>, String) {
    match result {
        Err(gram::Error::Data {
            line,
            field,
            message,
            ..
        }) => (line, field, message),
        other => panic!("expected a data error, got {other:?}"),
    }
}

/// A scratch path `gram-<tag>-<pid>` under the system temp dir, removed with everything in it
/// when dropped (so test runs leave nothing behind); it dereferences to the path.
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh scratch path `gram-<tag>-<pid>` (removed if present, not created).
pub fn temp_dir(tag: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("gram-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Scratch(dir)
}

/// Every weight of a trainer's model under its Hugging Face name, flattened in name order.
pub fn trained_weights(trainer: &gram::train::Trainer) -> Vec<f32> {
    gram::train::hf_tensors(&trainer.model)
        .unwrap()
        .into_values()
        .flat_map(|t| t.data)
        .collect()
}

/// The largest absolute difference between two equally long lists of values.
pub fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared lists differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The largest difference between any weight of two trainers' models.
pub fn weight_gap(a: &gram::train::Trainer, b: &gram::train::Trainer) -> f32 {
    max_difference(&trained_weights(a), &trained_weights(b))
}

/// The `p_a` of each line of a `gram judge` output file (none if the file is missing).
pub fn p_a_column(path: &std::path::Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["p_a"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// Deterministic uniform numbers (xorshift64*), so failures reproduce.
pub struct Numbers(pub u64);

impl Numbers {
    pub fn uniform(&mut self, low: f32, high: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        low + (high - low) * (bits as f32 / (1u64 << 24) as f32)
    }

    pub fn below(&mut self, n: usize) -> usize {
        ((self.uniform(0.0, 1.0) * n as f32) as usize).min(n - 1)
    }
}
