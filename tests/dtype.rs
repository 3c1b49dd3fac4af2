//! 16-bit weights (`--dtype`): conversion on load, what `auto` picks per device, mixed f16/f32
//! weights in one model, the loss kernels on 16-bit logits, and the command line; and the
//! vocabulary matrices cut into blocks that fit one GPU buffer binding.

mod common;

use burn::tensor::{Device, FloatDType, Int, Tensor, TensorData};
use gram::checkpoint::{Checkpoint, Conversion, Elements};
use gram::dtype::Dtype;
use gram::model::{Llama, VocabMatrix};
use half::{bf16, f16};

#[test]
fn narrowing_rounds_to_nearest_and_keeps_out_of_range_tensors_in_f32() {
    let f16s = |v: &[f32]| Elements::F16(v.iter().map(|&x| f16::from_f32(x)).collect());
    // In range: rounded to nearest even (1 + 2^-11 is halfway between 1 and 1 + 2^-10).
    let values = [
        1.0,
        1.0 + 2f32.powi(-11),
        -65504.0,
        3e-8,
        f32::NAN,
        f32::INFINITY,
    ];
    let Conversion {
        elements,
        out_of_range,
    } = Elements::F32(values.to_vec()).convert(FloatDType::F16);
    assert_eq!(out_of_range, 0);
    let Elements::F16(got) = elements else {
        panic!("f32 → f16 in range gives f16")
    };
    let got: Vec<f32> = got.iter().map(|x| x.to_f32()).collect();
    assert_eq!(&got[..3], [1.0, 1.0, -65504.0]);
    assert!(
        got[3] > 0.0 && (got[3] - 3e-8).abs() < 3e-8,
        "subnormal {}",
        got[3]
    );
    assert!(got[4].is_nan() && got[5] == f32::INFINITY);

    // Beyond ±65,504 the tensor stays f32, exactly, and the elements are counted.
    let big = vec![1.5, 70000.0, -1e6, f32::INFINITY];
    let kept = Elements::F32(big.clone()).convert(FloatDType::F16);
    assert_eq!(kept.out_of_range, 2);
    assert_eq!(kept.elements, Elements::F32(big));
    let from_bf16 = Elements::BF16(vec![bf16::from_f32(2.0), bf16::from_f32(1e5)]);
    let kept = from_bf16.convert(FloatDType::F16);
    assert_eq!(
        (kept.out_of_range, kept.elements),
        (1, Elements::F32(vec![2.0, 99840.0]))
    );

    // bf16 → f16 within range (f16 has 3 more mantissa bits, so this is exact), f16 → f32
    // exact, f32 → bf16 rounded.
    let bf = Elements::BF16([0.15625f32, -3.0, 0.0].map(bf16::from_f32).to_vec());
    assert_eq!(
        bf.convert(FloatDType::F16).elements,
        f16s(&[0.15625, -3.0, 0.0])
    );
    assert_eq!(
        f16s(&[0.1, 2.5]).convert(FloatDType::F32).elements,
        Elements::F32(vec![f16::from_f32(0.1).to_f32(), 2.5])
    );
    assert_eq!(
        Elements::F32(vec![1.0 + 2f32.powi(-9)])
            .convert(FloatDType::BF16)
            .elements,
        Elements::BF16(vec![bf16::from_f32(1.0)])
    );
}

#[test]
fn auto_is_f32_on_cpu_and_f16_on_gpus_with_f16_arithmetic() {
    let cpu = Device::flex();
    assert_eq!(Dtype::Auto.resolve(&cpu).unwrap(), FloatDType::F32);
    for (dtype, want) in [
        (Dtype::F32, FloatDType::F32),
        (Dtype::F16, FloatDType::F16),
        (Dtype::Bf16, FloatDType::BF16),
    ] {
        assert_eq!(dtype.resolve(&cpu).unwrap(), want);
    }
    let Some(gpu) = common::wgpu_device() else {
        return;
    };
    let f16 = gpu.supports_dtype(FloatDType::F16);
    let auto = if f16 {
        FloatDType::F16
    } else {
        FloatDType::F32
    };
    assert_eq!(Dtype::Auto.resolve(&gpu).unwrap(), auto);
    assert_eq!(Dtype::F16.resolve(&gpu).is_ok(), f16);
    // WGSL has no bf16: the error names the flag and the way out.
    let err = Dtype::Bf16.resolve(&gpu).unwrap_err().to_string();
    assert!(
        err.contains("--dtype bf16") && err.contains("--dtype f16"),
        "{err}"
    );
}

/// Write a tiny bf16 checkpoint whose layer-0 up projection holds one weight beyond f16's
/// range; the model it loads as in f16 and the one it loads as in f32.
fn mixed_checkpoint(device: &Device) -> (Llama, gram::model::LoadReport, Llama) {
    let config = common::tiny_config(49_152, 2);
    let tensors = common::tiny_tensors(&config);
    let big = "model.layers.0.mlp.up_proj.weight";
    let dir = tempfile::tempdir().unwrap();
    common::write_bf16_dir(dir.path(), &config, |name, i| match (name, i) {
        (n, 7) if n == big => 1e5,
        _ => tensors[name].data[i],
    });
    let mut checkpoint = Checkpoint::load(dir.path()).unwrap();
    let (f16_model, report) =
        Llama::from_checkpoint_as(&mut checkpoint, device, FloatDType::F16).unwrap();
    let mut checkpoint = Checkpoint::load(dir.path()).unwrap();
    let f32_model = Llama::from_checkpoint(&mut checkpoint, device).unwrap();
    (f16_model, report, f32_model)
}

/// A tensor beyond f16's range stays f32 (reported by name), the rest are f16, and the mixed
/// model computes what the f32 one does, to f16's precision.
fn check_mixed_weights(device: &Device) {
    let (model, report, exact) = mixed_checkpoint(device);
    assert_eq!(
        report.kept_f32,
        [("model.layers.0.mlp.up_proj.weight".to_string(), 1)]
    );
    assert!(
        report.to_string().contains("1 tensor(s) kept in f32")
            && report.to_string().contains("up_proj"),
        "{report}"
    );
    assert_eq!(model.dtype(), FloatDType::F16);
    let layer = &model.layers[0];
    let dtype = |p: &gram::model::Projection| -> FloatDType { p.weight.val().dtype().into() };
    assert_eq!(dtype(&layer.mlp.up_proj), FloatDType::F32);
    assert_eq!(dtype(&layer.mlp.gate_proj), FloatDType::F16);
    let gain: FloatDType = layer.input_layernorm.weight.val().dtype().into();
    assert_eq!(gain, FloatDType::F32, "norm gains stay f32");
    // Every matrix 2 bytes an element except the kept one; vectors 4.
    let exact_bytes: u64 = gram::model::layout::tensors(&model.config)
        .iter()
        .map(|t| t.len() as u64 * if t.shape.len() == 1 { 4 } else { 2 })
        .sum();
    let up = model.config.hidden_size * model.config.intermediate_size;
    assert_eq!(report.device_bytes, exact_bytes + 2 * up as u64);

    let ids: Vec<i64> = (0..12).map(|i| 100 + 37 * i).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, 12]), device);
    let logits = |m: &Llama| -> Vec<f32> {
        let logits = m.logits(m.hidden_states(ids.clone()));
        assert_eq!(
            logits.dtype(),
            burn::tensor::DType::F32,
            "logits come out f32"
        );
        logits.into_data().try_to_vec::<f32>().unwrap()
    };
    let (got, want) = (logits(&model), logits(&exact));
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let scale = want.iter().map(|x| x.abs()).fold(0f32, f32::max);
    assert!(
        worst.is_finite() && worst <= 2e-2 * scale,
        "worst {worst} of {scale}"
    );
}

#[test]
fn weights_beyond_f16_range_stay_f32_in_an_f16_model_on_cpu() {
    check_mixed_weights(&Device::flex());
}

#[test]
fn weights_beyond_f16_range_stay_f32_in_an_f16_model_on_wgpu() {
    if let Some(device) = common::wgpu_device() {
        check_mixed_weights(&device);
    }
}

/// 16-bit inputs keep the WGSL loss kernels: verdict logits in f16 are widened at the
/// preference loss's entry, and an f16 projection (a frozen 16-bit embedding in stage 1) is
/// multiplied with f32 accumulation before the row kernels. On wgpu the kernels still run,
/// forward and backward, and the losses and gradients equal those of the f32 inputs.
#[test]
fn f16_inputs_run_the_wgsl_loss_kernels() {
    let Some(device) = common::wgpu_device() else {
        return;
    };
    let device = device.autodiff();
    let values: Vec<f32> = (0..24)
        .map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.37)
        .collect();
    let tensor = |dtype: FloatDType| {
        Tensor::<2>::from_data(TensorData::new(values.clone(), [4, 6]), &device).cast(dtype)
    };
    let correct = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 1, 0], [4]), &device);
    let run = |dtype: FloatDType| {
        let before = gram::loss::wgsl_launches_on_this_thread();
        let hidden = tensor(FloatDType::F32).require_grad();
        // W: [4, 6] frozen, in `dtype`.
        let lse = gram::loss::projected_log_sum_exp(hidden.clone(), tensor(dtype), 2).unwrap();
        let pair = tensor(dtype).require_grad();
        let pref = gram::loss::preference_loss(pair.clone().narrow(1, 0, 2), correct.clone(), 0.05)
            .unwrap();
        let loss = lse.sum() + pref;
        assert_eq!(loss.dtype(), burn::tensor::DType::F32);
        let grads = loss.backward();
        let launched = gram::loss::wgsl_launches_on_this_thread() - before;
        // Projection: 2 chunks × (row_log_sum_exp + row_softmax_scaled); preference: 1 + 1.
        assert_eq!(launched, 6, "{dtype:?}: {launched} WGSL kernel dispatches");
        let read = |t: Tensor<2>| {
            t.cast(FloatDType::F32)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        let mut grad = read(hidden.grad(&grads).unwrap());
        grad.extend(read(pair.grad(&grads).unwrap()));
        (
            loss.inner().into_data().try_to_vec::<f32>().unwrap()[0],
            grad,
        )
    };
    let (wide_loss, wide_grad) = run(FloatDType::F32);
    let (loss, grad) = run(FloatDType::F16);
    // The f16 inputs are the f32 ones rounded (relative error 2^-11): losses agree to ~1e-2.
    assert!((loss - wide_loss).abs() < 2e-2, "{loss} vs {wide_loss}");
    for (a, b) in grad.iter().zip(&wide_grad) {
        assert!((a - b).abs() < 5e-3, "gradient {a} vs {b}");
    }
}

/// `gram judge --dtype f16` reports the weights it loaded and scores within 1e-2 of f32;
/// `--dtype bf16` on a wgpu adapter is refused naming the alternative.
#[test]
fn judge_command_takes_dtype() {
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pairs.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let judge = |device: &str, dtype: &str| {
        let output = dir.path().join(format!("{device}-{dtype}.jsonl"));
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_gram"))
            .args([
                "judge", "--device", device, "--dtype", dtype, "--limit", "2",
            ])
            .arg("--model")
            .arg(common::model_path())
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&output)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        (run.status.success(), stderr, common::p_a_column(&output))
    };
    let (ok, stderr, exact) = judge("cpu", "f32");
    assert!(ok && stderr.contains("weights: F32"), "{stderr}");
    let (ok, stderr, half) = judge("cpu", "f16");
    assert!(ok && stderr.contains("weights: F16"), "{stderr}");
    assert_eq!(half.len(), 2);
    for (a, b) in half.iter().zip(&exact) {
        assert!((a - b).abs() < 1e-2, "p_a {a} in f16, {b} in f32");
    }
    if common::wgpu_device().is_some() {
        let (ok, stderr, _) = judge("auto", "bf16");
        assert!(!ok && stderr.contains("--dtype f16"), "{stderr}");
    }
}

/// Blocks of a vocabulary matrix: 128 MiB at most on wgpu (Qwen3's 151,936-row embedding in f16
/// is three blocks), the whole matrix on the CPU.
#[test]
fn vocabulary_blocks_fit_one_buffer_binding_on_wgpu() {
    assert_eq!(
        VocabMatrix::rows_per_block(&Device::flex(), 1024, 2),
        usize::MAX
    );
    let Some(device) = common::wgpu_device() else {
        return;
    };
    let rows = VocabMatrix::rows_per_block(&device, 1024, 2);
    assert_eq!(rows, 65_536);
    assert_eq!(151_936usize.div_ceil(rows), 3);
    // SmolLM2's 49,152 × 576 f32 embedding (113 MB) stays one block.
    assert!(VocabMatrix::rows_per_block(&device, 576, 4) >= 49_152);
}

/// The largest elementwise difference of two equally long lists.
fn gap(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// A model whose embedding (tied to the output projection) is cut into blocks of 300 rows
/// (300, 300, 300, 100) embeds, projects and reads verdict rows as the whole matrix does,
/// including tokens on both sides of each block boundary, and exports the same tensors.
fn check_vocab_blocks(device: &Device) {
    let model = Llama::random(&common::tiny_config(1000, 2), device);
    let whole = Tensor::cat(
        model.embed_tokens.blocks.iter().map(|b| b.val()).collect(),
        0,
    );
    let mut cut = model.clone();
    cut.embed_tokens = VocabMatrix::from_tensor(whole, 300);
    assert_eq!(cut.embed_tokens.blocks.len(), 4);
    assert_eq!(cut.embed_tokens.dims(), [1000, 32]);

    let ids: Vec<i64> = vec![0, 299, 300, 301, 599, 600, 899, 900, 999, 5, 450, 777];
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, 12]), device);
    let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    let outputs = |m: &Llama| {
        let hidden = m.hidden_states(ids.clone());
        let logits = m.logits(hidden.clone()).reshape([12, 1000]);
        let last = hidden.reshape([12, 32]).narrow(0, 11, 1);
        let verdicts = m.token_logits(last, &[0, 299, 300, 999]);
        (values(logits), values(verdicts))
    };
    let (logits, verdicts) = outputs(&cut);
    let (want_logits, want_verdicts) = outputs(&model);
    assert!(gap(&logits, &want_logits) < 1e-5, "logits differ");
    assert!(
        gap(&verdicts, &want_verdicts) < 1e-5,
        "verdict logits differ"
    );
    assert_eq!(cut.hf_tensors().unwrap(), model.hf_tensors().unwrap());
}

#[test]
fn a_vocabulary_in_blocks_computes_what_the_whole_matrix_does_on_cpu() {
    check_vocab_blocks(&Device::flex());
}

#[test]
fn a_vocabulary_in_blocks_computes_what_the_whole_matrix_does_on_wgpu() {
    if let Some(device) = common::wgpu_device() {
        check_vocab_blocks(&device);
    }
}

/// Stage 1's token cross-entropy through the projection ([`VocabMatrix::token_cross_entropy`]),
/// with the matrix whole and cut into blocks of 300 rows, equals the mean of
/// `−log_softmax(h · Wᵀ)[target]` computed from the whole logits: the loss, the hidden states'
/// gradient and the matrix's, with targets on both sides of every block boundary.
fn check_token_cross_entropy(device: &Device) {
    let (tokens, d, vocab) = (12, 32, 1000);
    let targets: Vec<u32> = vec![0, 299, 300, 301, 599, 600, 899, 900, 999, 5, 450, 777];
    let matrix: Vec<f32> = (0..vocab * d)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.004)
        .collect();
    let hidden: Vec<f32> = (0..tokens * d)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) * 0.15)
        .collect();
    let leaf = |values: &Vec<f32>, shape: [usize; 2]| {
        Tensor::<2>::from_data(TensorData::new(values.clone(), shape), device).require_grad()
    };
    let read = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    // (loss, ∂/∂h, ∂/∂W) through the projection, W in blocks of `rows` rows.
    let projected = |rows: usize| {
        let w = VocabMatrix::from_tensor(leaf(&matrix, [vocab, d]), rows);
        let h = leaf(&hidden, [tokens, d]);
        let loss = w.token_cross_entropy(h.clone(), &targets).unwrap();
        let grads = loss.backward();
        let d_w = Tensor::cat(
            w.blocks
                .iter()
                .map(|b| b.val().grad(&grads).expect("each block trains"))
                .collect(),
            0,
        );
        (
            read(loss.unsqueeze()),
            read(h.grad(&grads).unwrap()),
            read(d_w),
        )
    };
    let reference = {
        let (w, h) = (leaf(&matrix, [vocab, d]), leaf(&hidden, [tokens, d]));
        let ids: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [tokens, 1]), device);
        let log_p =
            burn::tensor::activation::log_softmax(h.clone().matmul(w.clone().transpose()), 1);
        let loss = -log_p.gather(1, ids).mean();
        let grads = loss.backward();
        (
            read(loss.unsqueeze()),
            read(h.grad(&grads).unwrap()),
            read(w.grad(&grads).unwrap()),
        )
    };
    for rows in [vocab, 300] {
        let (loss, d_h, d_w) = projected(rows);
        assert!(
            gap(&loss, &reference.0) < 1e-5,
            "blocks of {rows}: loss {loss:?} vs {:?}",
            reference.0
        );
        assert!(
            gap(&d_h, &reference.1) < 1e-6,
            "blocks of {rows}: ∂/∂h differs"
        );
        assert!(
            gap(&d_w, &reference.2) < 1e-6,
            "blocks of {rows}: ∂/∂W differs"
        );
    }
    let w = VocabMatrix::from_tensor(leaf(&matrix, [vocab, d]), 300);
    let err = w
        .token_cross_entropy(leaf(&hidden, [tokens, d]).narrow(0, 0, 1), &[1000])
        .unwrap_err();
    assert!(
        err.to_string().contains("beyond the vocabulary (1000)"),
        "{err}"
    );
}

#[test]
fn token_cross_entropy_through_the_projection_matches_the_logits_on_cpu() {
    check_token_cross_entropy(&Device::flex().autodiff());
}

#[test]
fn token_cross_entropy_through_the_projection_matches_the_logits_on_wgpu() {
    if let Some(device) = common::wgpu_device() {
        check_token_cross_entropy(&device.autodiff());
    }
}
