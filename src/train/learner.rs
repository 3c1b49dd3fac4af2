//! The model being trained: the decoder, an optional scalar value head, LoRA adapters, and which
//! parameters learn.

use super::Objective;
use crate::Result;
use crate::model::{Llama, Lora, TrunkStore, common_prefix, trunk};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{DType, FloatDType, GradientCheckpointingStrategy, Tensor, TensorData};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The model being trained: the decoder, plus the scalar value head `w` (`[d, 1]`) of the
/// Bradley–Terry baseline.
#[derive(Module, Debug)]
pub struct Learner {
    pub llama: Llama,
    pub score: Option<Param<Tensor<2>>>,
    /// Token positions run through the decoder so far (a shared prefix counts once), shared by
    /// every copy of this learner: what [`Learner::positions_run`] reports.
    #[module(skip)]
    positions: Arc<AtomicUsize>,
    /// Where the frozen bottom layers' outputs are recorded and replayed from
    /// ([`Learner::with_trunk_store`]).
    #[module(skip)]
    trunk: Option<Arc<TrunkStore>>,
}

impl Learner {
    /// Wrap `llama` for `objective`; the Bradley–Terry head starts at N(0, 0.02²), drawn from
    /// `seed` (the same run seed gives the same head).
    pub fn new(llama: Llama, objective: Objective, seed: u64) -> Self {
        let score = objective.task().value_head().then(|| {
            let d = llama.config.hidden_size;
            let values = TensorData::new(normal(d, 0.02, seed), [d, 1]);
            Param::from_tensor(Tensor::from_data(values, &llama.device()))
        });
        Learner {
            llama,
            score,
            positions: Arc::default(),
            trunk: None,
        }
    }

    /// Record the output of the frozen bottom `store.layer()` layers for every micro-batch in
    /// `store`, and replay it when the store holds it ([`crate::model::trunk`]): runs that
    /// train the same top layers on the same batches — other learning rates, label smoothing,
    /// or another stage-1 start that kept those layers — then run only the layers that train.
    /// Losses and gradients are unchanged, bit for bit. The caller makes sure the trunk is
    /// frozen (see `Trainer`).
    pub fn with_trunk_store(mut self, store: TrunkStore) -> Self {
        self.trunk = Some(Arc::new(store));
        self
    }

    /// Give every projection of every layer a fresh LoRA adapter of `rank` (scale `alpha / rank`).
    pub fn add_lora(mut self, rank: usize, alpha: f64) -> Self {
        let device = self.llama.device();
        for layer in &mut self.llama.layers {
            for projection in layer.projections_mut() {
                let [d_in, d_out] = projection.weight.val().dims();
                projection.lora = Some(Lora::new(d_in, d_out, rank, alpha, &device));
            }
        }
        self
    }

    /// Choose what trains. With LoRA adapters, only they (and a Bradley–Terry head) train.
    /// Otherwise every parameter trains, or with `layers = Some(K)` only the top K decoder layers
    /// and the final norm (embeddings and output projection frozen). Frozen parameters are
    /// untracked, so the backward pass computes no weight gradient for them (with `K` layers it
    /// stops below the lowest trainable layer); the frozen bottom layers' weights also leave
    /// autodiff, so those layers run as in inference (fused attention on `cpu`, no graph
    /// bookkeeping), the decoder handing their output to the first trainable layer as a
    /// constant.
    ///
    /// With `recompute` (gradient checkpointing), the weights move to the same device with
    /// burn's gradient checkpointing (memory-bound activations are recomputed in the backward
    /// pass instead of kept until it).
    ///
    /// Parameters that train are held in f32 whatever the model was loaded in (master weights,
    /// so gradients and optimizer state are f32 too); frozen ones keep their float type, so a
    /// 16-bit base under f32 LoRA adapters stays 16-bit.
    pub fn set_trainable(self, layers: Option<usize>, recompute: bool) -> Self {
        self.select_trainable(layers, recompute)
            .map(&mut WidenTrainable)
    }

    fn select_trainable(self, layers: Option<usize>, recompute: bool) -> Self {
        let mut learner = self.map(&mut Leaves { recompute }).set_require_grad(true);
        let adapted = (learner.llama.layers.iter()).any(|l| l.self_attn.q_proj.lora.is_some());
        if adapted {
            let score = learner.score.take();
            let mut learner = learner.no_grad();
            for layer in &mut learner.llama.layers {
                for projection in layer.projections_mut() {
                    if let Some(lora) = projection.lora.as_mut() {
                        lora.a = lora.a.clone().set_require_grad(true);
                        lora.b = lora.b.clone().set_require_grad(true);
                    }
                }
            }
            learner.score = score;
            return learner;
        }
        let Some(k) = layers else { return learner };
        let llama = &mut learner.llama;
        let n = llama.layers.len();
        llama.embed_tokens = llama.embed_tokens.clone().no_grad();
        llama.lm_head = llama.lm_head.take().map(|w| w.no_grad());
        llama.layers = std::mem::take(&mut llama.layers)
            .into_iter()
            .enumerate()
            .map(|(i, layer)| {
                if i + k < n {
                    layer.no_grad().map(&mut WithoutAutodiff)
                } else {
                    layer
                }
            })
            .collect();
        learner
    }

    /// Ids and ranks of the parameters that require gradients.
    pub(crate) fn trainable_params(&self) -> Vec<(ParamId, usize)> {
        struct Collect(Vec<(ParamId, usize)>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if param.val().is_require_grad() {
                    self.0.push((param.id, D));
                }
            }
        }
        let mut collect = Collect(Vec::new());
        self.visit(&mut collect);
        collect.0
    }

    /// Final hidden states at each sequence's last real token, `[B, d]`.
    ///
    /// When the sequences share a prefix (the judge instruction; with both orders of a pair in
    /// one micro-batch, the question too), the prefix runs once with batch 1 and the rest of each
    /// sequence attends to its keys and values ([`Llama::prefill`]); under autodiff the gradient
    /// flows through those keys and values, so loss and gradients equal running every sequence
    /// whole.
    pub(crate) fn last_hidden(&self, sequences: &[&[u32]], pad_id: u32) -> Result<Tensor<2>> {
        // Only with a store: the key hashes every id of the micro-batch.
        let key = (self.trunk.as_ref()).map(|_| trunk::computation_key(&[MICRO_BATCH], sequences));
        let mut trunk = match (&self.trunk, key) {
            (Some(store), Some(key)) => Some(store.trunk(key)?),
            _ => None,
        };
        let shortest = sequences.iter().map(|s| s.len()).min().unwrap_or(0);
        let shared = sequences
            .iter()
            .skip(1)
            .map(|s| common_prefix(sequences[0], s))
            .min()
            .unwrap_or(0)
            .min(shortest.saturating_sub(1));
        let prefix = (sequences.len() > 1 && shared >= MIN_SHARED_PREFIX)
            .then(|| {
                let head = &sequences[0][..shared];
                self.llama.prefill(head, None, trunk.as_mut())
            })
            .transpose()?;
        let skip = prefix.as_ref().map_or(0, |p| p.len());
        let run = skip + sequences.iter().map(|s| s.len() - skip).sum::<usize>();
        self.positions.fetch_add(run, Ordering::Relaxed);
        let hidden =
            self.llama
                .last_hidden_states(sequences, prefix.as_ref(), pad_id, trunk.as_mut())?;
        if let (Some(store), Some(key), Some(trunk)) = (&self.trunk, key, trunk) {
            store.finish(key, trunk)?;
        }
        Ok(hidden)
    }

    /// Token positions the verdict and Bradley–Terry objectives have run through the decoder
    /// since this learner was made, a shared prefix counted once per micro-batch: with
    /// prefix reuse this is less than the examples' total length.
    pub fn positions_run(&self) -> usize {
        self.positions.load(Ordering::Relaxed)
    }
}

/// `n` draws from N(0, σ²): the Box–Muller transform of a ChaCha8 stream seeded with `seed`,
/// `√(−2 ln u₁)·cos(2π u₂)` with `u₁ ∈ (0, 1]`.
fn normal(n: usize, sigma: f64, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u1 = 1.0 - rng.random::<f64>();
            let u2 = rng.random::<f64>();
            (sigma * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

/// Tells a micro-batch's trunk recordings from other computations'
/// ([`trunk::computation_key`]).
const MICRO_BATCH: u64 = 2;

/// Shortest shared prefix worth an extra batch-1 pass.
const MIN_SHARED_PREFIX: usize = 8;

/// Takes weights out of autodiff (same values and parameter id).
struct WithoutAutodiff;

impl ModuleMapper for WithoutAutodiff {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| t.inner())
    }
}

/// Widens every 16-bit parameter that requires gradients into a fresh f32 autodiff leaf on
/// the same device (same values, exactly; same parameter id).
struct WidenTrainable;

impl ModuleMapper for WidenTrainable {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            if !t.is_require_grad() || t.dtype() == DType::F32 {
                return t;
            }
            let device = t.device();
            Tensor::from_data(t.cast(FloatDType::F32).into_data(), &device).set_require_grad(true)
        })
    }
}

/// Turns every weight into a fresh autodiff leaf (same values and parameter id): weights that
/// were plain tensors, or results of earlier tracked operations (e.g. a move between devices),
/// can then require gradients. With `recompute` the leaves are on the device with burn's
/// gradient checkpointing: weights already there (a model loaded onto it, as
/// [`crate::train::Recipe`] does) are detached in place, others are copied there once.
struct Leaves {
    recompute: bool,
}

impl ModuleMapper for Leaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let recompute = self.recompute;
        param.map(|t| {
            let device = t.device();
            let checkpointing = device.gradient_checkpointing_strategy()
                == Some(GradientCheckpointingStrategy::Balanced);
            match (recompute, checkpointing) {
                (true, true) => t.detach(),
                (true, false) => {
                    let (device, dtype) = (device.autodiff().gradient_checkpointing(), t.dtype());
                    Tensor::from_data(t.into_data(), (&device, dtype))
                }
                (false, _) => t.inner().autodiff(),
            }
        })
    }
}
