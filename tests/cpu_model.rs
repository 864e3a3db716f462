//! Whole-model checks of the CPU kernels on random models written with the GGUF writer:
//! every kernel path and thread count against the scalar reference, chunked prefill
//! against step mode, and the accuracy of Q8_0 / Q4_0 weights against f32.

mod common;

use common::{rel_max, small_cfg};
use mamba_core::{DType, Isa, ModelConfig, Scalar};
use mamba_rt::cpu::random_model::{random_model, shape_130m};
use mamba_rt::cpu::{CpuKernels, isa_available};
use mamba_rt::{LoadedModel, Session};

fn load(c: &ModelConfig, dtype: DType, seed: u64) -> LoadedModel {
    LoadedModel::from_aligned(random_model(c, dtype, seed).to_bytes()).unwrap()
}

/// ||a - b|| / ||b||.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

fn tokens(n: usize, v: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + 13) % v) as u32).collect()
}

fn step_logits<K: mamba_core::Kernels>(m: &LoadedModel, k: &K, toks: &[u32]) -> Vec<f32> {
    let v = m.config().vocab_size;
    let mut s = Session::new(m);
    let mut out = vec![0f32; toks.len() * v];
    for (t, row) in toks.iter().zip(out.chunks_exact_mut(v)) {
        s.step_token(k, *t, row).unwrap();
    }
    out
}

fn isas() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|&i| isa_available(i)).collect()
}

#[test]
fn every_path_matches_scalar_on_a_whole_model() {
    for (n, biases) in [(16, false), (5, true)] {
        for dtype in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::Q8_0,
            DType::Q4_0,
        ] {
            let m = load(&small_cfg(n, biases, biases), dtype, 3);
            let toks = tokens(20, 300);
            let want = step_logits(&m, &Scalar, &toks);
            for isa in isas() {
                for threads in [1, 2] {
                    let k = CpuKernels::with_isa(threads, isa).unwrap();
                    let got = step_logits(&m, &k, &toks);
                    let e = rel_max(&got, &want);
                    // f32 math in another order: 1e-4; int8 activations: 2e-2.
                    let tol = if dtype.block_len() > 1 { 2e-2 } else { 1e-4 };
                    assert!(
                        e <= tol,
                        "{dtype:?} n{n} {} x{threads}: rel err {e}",
                        isa.name()
                    );
                }
            }
        }
    }
}

#[test]
fn prefill_matches_step_mode() {
    for (n, biases) in [(16, false), (5, true)] {
        for dtype in [DType::F32, DType::Q8_0] {
            let m = load(&small_cfg(n, biases, biases), dtype, 5);
            let v = m.config().vocab_size;
            // 300 tokens: two full blocks of 120 and a partial one.
            let toks = tokens(300, v);
            for isa in isas() {
                for threads in [1, 2] {
                    let k = CpuKernels::with_isa(threads, isa).unwrap();
                    let want = step_logits(&m, &k, &toks);
                    let mut s = Session::new(&m);
                    let mut all = vec![0f32; toks.len() * v];
                    s.prefill_tokens_all(&k, &toks, &mut all).unwrap();
                    let tol = if dtype.block_len() > 1 { 2e-2 } else { 1e-4 };
                    let e = rel_max(&all, &want);
                    assert!(
                        e <= tol,
                        "{dtype:?} {} x{threads}: all-logits err {e}",
                        isa.name()
                    );
                    // Last-only logits and the state match step mode too.
                    let mut s2 = Session::new(&m);
                    let mut last = vec![0f32; v];
                    s2.prefill_tokens(&k, &toks, &mut last).unwrap();
                    let e = rel_max(&last, &want[(toks.len() - 1) * v..]);
                    assert!(e <= tol, "{dtype:?} {}: last-logits err {e}", isa.name());
                    let mut s3 = Session::new(&m);
                    let mut row = vec![0f32; v];
                    for &t in &toks {
                        s3.step_token(&k, t, &mut row).unwrap();
                    }
                    let e = rel_max(s2.state(), s3.state());
                    assert!(e <= tol, "{dtype:?} {}: state err {e}", isa.name());
                }
            }
        }
    }
}

#[test]
fn prefill_embeddings_matches_step_embedding() {
    let m = load(&small_cfg(16, false, false), DType::F32, 9);
    let d = m.config().d_model;
    let t = 70;
    let x: Vec<f32> = (0..t * d)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    let k = CpuKernels::new(2);
    let mut s = Session::new(&m);
    let mut want = vec![0f32; t * d];
    for (xi, oi) in x.chunks_exact(d).zip(want.chunks_exact_mut(d)) {
        s.step_embedding(&k, xi, oi).unwrap();
    }
    let mut s2 = Session::new(&m);
    let mut got = vec![0f32; t * d];
    s2.prefill_embeddings(&k, &x, &mut got).unwrap();
    let e = rel_max(&got, &want);
    assert!(e <= 1e-4, "hidden err {e}");
}

#[test]
fn prefill_rejects_bad_input_and_leaves_state() {
    let m = load(&small_cfg(16, false, false), DType::F32, 1);
    let k = CpuKernels::new(1);
    let mut s = Session::new(&m);
    let mut l = vec![0f32; 300];
    assert!(s.prefill_tokens(&k, &[1, 2, 300], &mut l).is_err());
    assert!(s.prefill_tokens(&k, &[], &mut l).is_err());
    assert!(s.prefill_tokens(&k, &[1], &mut l[..5]).is_err());
    assert!(s.state().iter().all(|&v| v == 0.0));
}

/// Q8_0 and Q4_0 weights against f32 weights (the same values before encoding) on a
/// model of mamba-130m's widths (2 layers, full vocabulary), through the fastest path.
/// Q8_0 must stay within 2e-2 relative (L2) error; Q4_0's is printed.
#[test]
fn quantized_logits_against_f32() {
    let mut c = shape_130m();
    c.n_layer = 2;
    let toks = tokens(16, c.vocab_size);
    let k = CpuKernels::new(0);
    let f32m = load(&c, DType::F32, 11);
    let want = step_logits(&f32m, &k, &toks);
    for dtype in [DType::F16, DType::Q8_0, DType::Q4_0] {
        let m = load(&c, dtype, 11);
        let got = step_logits(&m, &k, &toks);
        let e = rel_l2(&got, &want);
        let em = rel_max(&got, &want);
        eprintln!(
            "{dtype:?} vs f32 logits ({}): rel L2 {e:.3e}, rel max {em:.3e}",
            k.isa().name()
        );
        if dtype == DType::Q8_0 {
            assert!(e <= 2e-2, "Q8_0 rel error {e}");
        }
    }
    // The scalar reference (no activation quantization) on the same models.
    let want = step_logits(&f32m, &Scalar, &toks[..4]);
    for dtype in [DType::Q8_0, DType::Q4_0] {
        let m = load(&c, dtype, 11);
        let got = step_logits(&m, &Scalar, &toks[..4]);
        let e = rel_l2(&got, &want);
        eprintln!("{dtype:?} vs f32 logits (scalar): rel L2 {e:.3e}");
        if dtype == DType::Q8_0 {
            assert!(e <= 2e-2, "Q8_0 rel error {e}");
        }
    }
}
