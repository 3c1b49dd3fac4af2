//! # gram — generative foundation reward models on any GPU
//!
//! A GRAM (Wang et al., ICML 2025) is a causal language model used as a judge: it reads a judge
//! instruction, a prompt `x` and two responses, and its next-token probabilities for the verdict
//! tokens "A" and "B" say which response is better. Training has two stages — unsupervised
//! generation of response pairs, then supervised fine-tuning on labeled pairs with label
//! smoothing — and at inference each pair is scored in both orders and averaged.
//!
//! Everything runs on burn's wgpu backend (Vulkan, Metal, DX12; lavapipe in CI) or, without a
//! GPU, on burn's pure-Rust `flex` CPU backend. The crate is organised one concept per module,
//! read from the bottom up:
//!
//! | module | concept |
//! |---|---|
//! | [`model`] | the Llama-family decoder (`layers`, `rope`, `lora`), its [`config`] (mirrors `config.json`), the per-architecture [`model::Variant`] and the weight-layout table ([`model::layout`]) that loading, GGUF names and export share |
//! | [`checkpoint`] | model files: GGUF and Hugging Face directories in, Hugging Face directories out |
//! | [`tokenizer`] | tokenizer and chat-template rendering |
//! | [`device`] | choosing a wgpu adapter or the CPU |
//! | [`dtype`] | the float type weights are held in (`--dtype`), and what each backend supports |
//! | [`matmul`] | the products `x · W` of every projection: 16-bit weights, the system's BLAS on the CPU; the CPU's causal attention on that BLAS |
//! | [`loss`] | the WGSL loss kernels with hand-written backward passes (plain tensor ops on the CPU) |
//! | [`pair`] | pairs, preferences, verdicts, the [`pair::Judge`] trait |
//! | [`prompt`] | the texts a model reads: judge prompt template and builder, verdict tokens, the stage-1 and reward-model layouts |
//! | [`preset`] | named prompt + labels + chat-template options (`--preset gram`: the released GRAM checkpoints') |
//! | [`judge`] | the model-backed judge: both orders, batching, shared-prefix reuse |
//! | [`data`] | input rows with their locations (file and line, or request row); one file per data format; unlabeled pairs from model outputs |
//! | [`rank`], [`reward`] | best-of-n and list ranking with Bradley–Terry fitting; scalar RL rewards |
//! | [`eval`] | the benchmark driver and reports; one scorer per benchmark |
//! | [`parallel`], [`merge`] | beyond one device: replicas (`--devices`), shards (`--shard i/N`) and merging their outputs |
//! | [`train`] | the training loop, one file per objective (stage 1, stage 2, Bradley–Terry), the run folder, options, the recipe |
//! | [`serve`] | the HTTP reward server: lifecycle, batcher, HTTP, routes, OpenRLHF adapter |
//! | [`io`], [`progress`], [`interrupt`], [`error`] | atomic output files, progress lines, Ctrl-C/SIGTERM, errors |
//! | `extension` (private) | what the burn backend extensions (`loss`, `matmul::blas`, `matmul::attention`) share |
//!
//! The `gram` binary (`src/cli/`) is a thin clap layer over these.

pub mod chat_format;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod dtype;
pub mod error;
pub mod eval;
mod extension;
pub mod interrupt;
pub mod io;
pub mod judge;
pub mod loss;
pub mod matmul;
pub mod merge;
pub mod model;
pub mod pair;
pub mod parallel;
pub mod preset;
pub mod progress;
pub mod prompt;
pub mod rank;
pub mod reward;
pub mod serve;
mod simd;
pub mod tokenizer;
pub mod train;

pub use error::{Error, Result};
/// The model configuration lives with the model; `gram::config` is kept as its short path.
pub use model::config;
pub use pair::{Judge, Pair, Preference, Verdict};
