//! # gram — generative foundation reward models on any GPU
//!
//! A GRAM (Wang et al., ICML 2025) is a causal language model used as a judge: it reads a judge
//! instruction, a prompt `x` and two responses, and its next-token probabilities for the verdict
//! tokens "A" and "B" say which response is better. Training has two stages — unsupervised
//! generation of response pairs, then supervised fine-tuning on labeled pairs with label
//! smoothing — and at inference each pair is scored in both orders and averaged.
//!
//! Everything runs on burn's wgpu backend (Vulkan, Metal, DX12; lavapipe in CI) or, without a
//! GPU, on burn's pure-Rust `flex` CPU backend. The crate is organised one concept per module:
//!
//! | module | concept |
//! |---|---|
//! | [`config`] | the model's hyper-parameters (mirrors `config.json`) |
//! | [`checkpoint`] | reading GGUF files and Hugging Face directories; writing HF directories |
//! | [`tokenizer`] | tokenizer and chat-template rendering |
//! | [`model`] | the Llama-family decoder, its architecture variants and weight-layout table |
//! | [`device`] | choosing a wgpu adapter or the CPU |
//! | [`pair`] | pairs, preferences, verdicts, the [`pair::Judge`] trait |
//! | [`prompt`] | the judge prompt template and builder, the stage-1 and reward-model layouts |
//! | [`judge`] | the model-backed judge |
//! | [`data`] | input rows and their locations; preference data formats (HH-RLHF, RM-Bench, LLMBar, LLaMA-Factory, JSONL); unlabeled pairs from model-output files |
//! | [`loss`] | the WGSL loss kernels with hand-written backward passes |
//! | [`rank`] | best-of-n and list ranking, Bradley–Terry fitting |
//! | [`reward`] | scalar RL rewards from the judge |
//! | [`eval`] | running a benchmark through a judge; one scorer per benchmark; reports |
//! | [`serve`] | the HTTP reward server |
//! | [`train`] | both training stages and the Bradley–Terry baseline |
//! | [`io`], [`progress`] | atomic output files, progress lines |

pub mod checkpoint;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod interrupt;
pub mod io;
pub mod judge;
pub mod loss;
pub mod model;
pub mod pair;
pub mod progress;
pub mod prompt;
pub mod rank;
pub mod reward;
pub mod serve;
pub mod tokenizer;
pub mod train;

pub use error::{Error, Result};
/// The model configuration lives with the model; `gram::config` is kept as its short path.
pub use model::config;
pub use pair::{Judge, Pair, Preference, Verdict};
