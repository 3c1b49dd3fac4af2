//! A vocabulary-sized matrix `W`, `[vocab, d]` — the token embedding, or an untied output
//! projection — held as blocks of consecutive rows, so that no block is larger than one GPU
//! buffer binding may be.
//!
//! A kernel sees a tensor through one storage-buffer binding, and adapters cap its size
//! (`maxStorageBufferBindingSize`; WebGPU guarantees only 128 MiB, lavapipe allows no more).
//! Qwen3's 151,936 × 1,024 embedding is 311 MB in f16, and Qwen3-14B's 151,936 × 5,120 is
//! 1.55 GB. On wgpu such matrices are cut into blocks of at most [`MAX_BLOCK_BYTES`]; the CPU
//! backend holds one block. Every use is written blockwise:
//!
//! ```text
//! embed(ids)   = Σ_b  W_b[clamp(ids − s_b)] · [s_b ≤ ids < s_b + n_b]      (one gather per block)
//! logits(h)    = [h · W_1ᵀ | h · W_2ᵀ | …]                                  (concatenated over vocab)
//! rows(tokens) = [W_{b(t)}[t − s_b(t)] for t in tokens]
//! ```
//!
//! with `s_b` the first row of block `b` and `n_b` its row count.

use burn::module::{Module, Param};
use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};

use crate::Result;
use crate::checkpoint::HostTensor;

/// The largest block a vocabulary matrix is held in on wgpu: 128 MiB, WebGPU's guaranteed
/// minimum of `maxStorageBufferBindingSize`.
pub const MAX_BLOCK_BYTES: usize = 1 << 27;

/// A `[vocab, d]` matrix as row blocks `[n_b, d]`, in order.
#[derive(Module, Debug)]
pub struct VocabMatrix {
    pub blocks: Vec<Param<Tensor<2>>>,
}

impl VocabMatrix {
    /// One block: the whole matrix.
    pub fn whole(weight: Param<Tensor<2>>) -> Self {
        VocabMatrix {
            blocks: vec![weight],
        }
    }

    /// Rows per block for a matrix of width `d` with `bytes` per element on `device`: all of
    /// them on the CPU, at most [`MAX_BLOCK_BYTES`] worth on wgpu.
    pub fn rows_per_block(device: &Device, d: usize, bytes: usize) -> usize {
        if *device == Device::flex() {
            usize::MAX
        } else {
            (MAX_BLOCK_BYTES / (d * bytes).max(1)).max(1)
        }
    }

    /// `weight` cut into blocks of `rows_per_block` rows (the last may be shorter), each its
    /// own buffer on `weight`'s device, in its float type.
    pub fn from_tensor(weight: Tensor<2>, rows_per_block: usize) -> Self {
        let [vocab, _] = weight.dims();
        let (device, dtype) = (weight.device(), weight.dtype());
        let blocks = (0..vocab)
            .step_by(rows_per_block.max(1))
            .map(|start| {
                let rows = rows_per_block.min(vocab - start);
                let block = weight.clone().narrow(0, start, rows).into_data();
                Param::from_tensor(Tensor::from_data(block, (&device, dtype)))
            })
            .collect();
        VocabMatrix { blocks }
    }

    /// Rows `[vocab]` and width `d`.
    pub fn dims(&self) -> [usize; 2] {
        let d = self.blocks[0].val().dims()[1];
        [self.blocks.iter().map(|b| b.val().dims()[0]).sum(), d]
    }

    /// The float type of the elements.
    pub fn dtype(&self) -> FloatDType {
        self.blocks[0].val().dtype().into()
    }

    pub fn device(&self) -> Device {
        self.blocks[0].val().device()
    }

    /// Each block with its first row: `(s_b, W_b)`.
    fn starts(&self) -> impl Iterator<Item = (usize, Tensor<2>)> + '_ {
        self.blocks.iter().scan(0, |start, block| {
            let block = block.val();
            let s = *start;
            *start += block.dims()[0];
            Some((s, block))
        })
    }

    /// Rows `ids` (`[B, T]` token ids) as f32 vectors, `[B, T, d]`.
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        if let [block] = self.blocks.as_slice() {
            return burn::tensor::module::embedding(block.val(), ids).cast(FloatDType::F32);
        }
        let mut sum: Option<Tensor<3>> = None;
        for (start, block) in self.starts() {
            let rows = block.dims()[0] as i64;
            let local = ids.clone() - start as i64;
            let inside = local
                .clone()
                .greater_equal_elem(0)
                .bool_and(local.clone().lower_elem(rows));
            let x = burn::tensor::module::embedding(block, local.clamp(0, rows - 1))
                .cast(FloatDType::F32)
                * inside.float().unsqueeze_dim::<3>(2);
            sum = Some(match sum {
                Some(s) => s + x,
                None => x,
            });
        }
        sum.expect("a vocabulary matrix has at least one block")
    }

    /// `h · Wᵀ` over the whole vocabulary, `[.., vocab]` for `h` `[.., d]`: each block
    /// multiplied in its float type ([`crate::matmul::linear`]), the results concatenated.
    pub fn logits<const D: usize>(&self, hidden: Tensor<D>) -> Tensor<D> {
        if let [block] = self.blocks.as_slice() {
            return crate::matmul::linear(hidden, block.val().transpose(), None);
        }
        let parts: Vec<Tensor<D>> = self
            .blocks
            .iter()
            .map(|b| crate::matmul::linear(hidden.clone(), b.val().transpose(), None))
            .collect();
        Tensor::cat(parts, D - 1)
    }

    /// Mean token cross-entropy of `hidden` `[tokens, d]` against `targets` (one token id per
    /// row), in nats, `[1]`, without the `[tokens, vocab]` logits:
    ///
    /// ```text
    /// loss = mean_t ( log Σ_b e^(lse_{b,t}) − h_t · w_{y_t} ),   lse_{b,t} = log Σ_{v ∈ b} e^(h_t · w_v)
    /// ```
    ///
    /// Each block's log-sum-exp is [`crate::loss::projected_log_sum_exp`] (chunks of
    /// [`crate::loss::projection_chunk_rows`] rows), the blocks are merged by one more
    /// log-sum-exp over `[tokens, blocks]`, and the target logits are the target rows
    /// ([`Self::embed`]) dotted with the hidden states. Gradients reach `hidden` and, when it
    /// trains, `W`.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Invalid`] if the counts differ, there are no tokens, or a target is
    /// beyond the vocabulary.
    pub fn token_cross_entropy(&self, hidden: Tensor<2>, targets: &[u32]) -> Result<Tensor<1>> {
        let [vocab, _] = self.dims();
        let [tokens, d] = hidden.dims();
        if tokens != targets.len() || tokens == 0 {
            return Err(crate::Error::invalid(format!(
                "token cross-entropy: {tokens} hidden rows for {} targets",
                targets.len()
            )));
        }
        if let Some(t) = targets.iter().find(|&&t| t as usize >= vocab) {
            return Err(crate::Error::invalid(format!(
                "token cross-entropy: target token {t} is beyond the vocabulary ({vocab})"
            )));
        }
        let hidden = hidden.cast(FloatDType::F32);
        let chunk_rows = crate::loss::projection_chunk_rows(vocab);
        let per_block = self
            .blocks
            .iter()
            .map(|b| crate::loss::projected_log_sum_exp(hidden.clone(), b.val(), chunk_rows))
            .collect::<Result<Vec<_>>>()?;
        let log_sum_exp = match <[Tensor<1>; 1]>::try_from(per_block) {
            Ok([one]) => one,
            Err(per_block) => {
                let per_block = Tensor::stack::<2>(per_block, 1);
                let max = per_block.clone().max_dim(1).detach();
                ((per_block - max.clone()).exp().sum_dim(1).log() + max).squeeze_dim(1)
            }
        };
        let ids = targets.iter().map(|&t| t as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, tokens]), &hidden.device());
        let target_rows = self.embed(ids).reshape([tokens, d]);
        let target_logits = (hidden * target_rows).sum_dim(1).squeeze_dim(1);
        Ok((log_sum_exp - target_logits).mean())
    }

    /// The rows of `tokens`, `[tokens.len(), d]`, in the matrix's float type.
    ///
    /// Panics if a token is beyond the vocabulary (the judge and the trainer check their
    /// verdict tokens against the tokenizer, and loading checks the tokenizer against the
    /// vocabulary).
    pub fn rows(&self, tokens: &[u32]) -> Tensor<2> {
        let vocab = self.dims()[0];
        // (block, row within it) of each token.
        let located: Vec<(usize, i64)> = tokens
            .iter()
            .map(|&token| {
                let t = token as usize;
                self.starts()
                    .enumerate()
                    .find(|(_, (s, b))| t >= *s && t < s + b.dims()[0])
                    .map(|(i, (s, _))| (i, (t - s) as i64))
                    .unwrap_or_else(|| panic!("token {token} is beyond the vocabulary ({vocab})"))
            })
            .collect();
        let select = |block: usize, rows: Vec<i64>| {
            let block = self.blocks[block].val();
            let n = rows.len();
            let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &block.device());
            block.select(0, rows)
        };
        // All in one block (always so with one block, and for small ids such as the verdict
        // labels'): one gather. Otherwise one per token, concatenated.
        match located.first() {
            Some(&(first, _)) if located.iter().all(|&(b, _)| b == first) => {
                select(first, located.iter().map(|&(_, r)| r).collect())
            }
            _ => Tensor::cat(
                located
                    .into_iter()
                    .map(|(b, r)| select(b, vec![r]))
                    .collect(),
                0,
            ),
        }
    }

    /// The whole matrix read back to the host as f32.
    pub fn host(&self) -> Result<HostTensor> {
        let mut data = Vec::new();
        for block in &self.blocks {
            data.extend(super::weights::host(block.val())?.data);
        }
        let [vocab, d] = self.dims();
        Ok(HostTensor {
            shape: vec![vocab, d],
            data,
        })
    }
}
