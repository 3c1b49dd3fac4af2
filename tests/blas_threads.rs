//! A product's bits do not depend on what other threads run. OpenBLAS's thread count is
//! process-wide; the CPU attention sets it to one for its small products, and with OpenBLAS's
//! Haswell kernels (what AVX2-only and Zen 1–3 CPUs get, forced here so that every machine
//! checks it) a product's rounding depends on that count. Before products of the two kinds were
//! kept apart, a projection that ran while another thread was inside the attention came out
//! differently (CI's trunk tests failed on it).
//!
//! Its own test binary: `OPENBLAS_CORETYPE` must be set before the library is loaded.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use gram::matmul::{attention, blas, linear};
use std::sync::atomic::{AtomicBool, Ordering};

fn tensor<const D: usize>(dims: [usize; D], seed: u64) -> Tensor<D> {
    let mut numbers = common::Numbers(seed);
    let count = dims.iter().product();
    let data: Vec<f32> = (0..count).map(|_| numbers.uniform(-1.0, 1.0)).collect();
    Tensor::from_data(TensorData::new(data, dims), &Device::flex())
}

#[test]
fn a_product_rounds_the_same_while_another_thread_runs_attention() {
    // SAFETY: the only test of this binary, and nothing has read the environment yet.
    unsafe { std::env::set_var("OPENBLAS_CORETYPE", "Haswell") };
    if blas::name().is_none() {
        assert!(
            !common::required("GRAM_REQUIRE_BLAS"),
            "GRAM_REQUIRE_BLAS is set but no BLAS could be opened"
        );
        return common::say_skipped("no system BLAS (install libopenblas0)");
    }
    // A projection's shape, whose rounding differs between one OpenBLAS thread and two.
    let (x, w) = (tensor([40, 576], 1), tensor([576, 1536], 2));
    let product = || {
        let y = linear(x.clone(), w.clone(), None);
        y.into_data().try_to_vec::<f32>().unwrap()
    };
    let alone = product();
    let (q, k, v) = (
        tensor([1, 9, 100, 64], 3),
        tensor([1, 3, 100, 64], 4),
        tensor([1, 3, 100, 64], 5),
    );
    assert!(attention::takes(&q, &k, &v));
    let done = AtomicBool::new(false);
    let mut attention_calls = 0;
    std::thread::scope(|scope| {
        let attending = scope.spawn(|| {
            let mut calls = 0;
            while !done.load(Ordering::Relaxed) {
                attention::causal_attention(q.clone(), k.clone(), v.clone());
                calls += 1;
            }
            calls
        });
        for round in 0..300 {
            let beside = product();
            if beside != alone {
                done.store(true, Ordering::Relaxed);
                panic!("round {round}: the product changed while another thread ran attention");
            }
        }
        done.store(true, Ordering::Relaxed);
        attention_calls = attending.join().unwrap();
    });
    assert!(
        attention_calls > 0,
        "the attention never ran beside the products"
    );
}
