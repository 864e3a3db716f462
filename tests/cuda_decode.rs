//! GPU streaming decode (mamba-cuda's `GpuDecoder`) against mamba-core's f32
//! step path (`step_token` with `Scalar`) on the HF conformance models and on
//! random models with every optional tensor (mixed Q8_0/Q4_0 + F16 files
//! included): logits and state after 1,000 steps of several streams sharing
//! the batch; prefill (GPU `GpuModel`) then decode equals decode only.
//! Skips without a GPU (prints why); with `MAMBA_REQUIRE_GPU=1` a missing GPU
//! fails instead.
//!
//! Lines starting with `rel ` give the measured errors (parsed by the device script).
#![cfg(feature = "cuda")]

mod common;

use common::cuda::{CONFORMANCE, fixture, gpu, random_cfg};
use common::rel_max;
use mamba_core::{DType, Scalar};
use mamba_cuda::{
    DecodeOptions, DecodeWeights, GemmPrecision, GpuContext, GpuDecoder, GpuModel, LogitsWanted,
    WeightPlacement,
};
use mamba_rt::LoadedModel;
use mamba_rt::cpu::random_model::random_model;

fn token(s: usize, t: usize, v: usize) -> u32 {
    ((t * 7919 + s * 104_729 + 13) % v) as u32
}

fn opts(weights: DecodeWeights, max_slots: usize, gemm_min_batch: usize) -> DecodeOptions {
    DecodeOptions {
        weights,
        max_slots,
        graphs: true,
        placement: WeightPlacement::Device,
        gemm_min_batch,
    }
}

/// `streams` streams together for `steps` teacher-forced steps against the
/// CPU; returns the worst logits (checked every 250 steps and at the end)
/// and final-state errors.
fn decode_vs_cpu(
    gpu: &GpuContext,
    m: &LoadedModel,
    o: DecodeOptions,
    streams: usize,
    steps: usize,
) -> (f32, f32) {
    let view = m.view();
    let cfg = *m.config();
    let v = cfg.vocab_size;
    let mut dec = GpuDecoder::new(gpu, &view, o).unwrap();
    dec.poison().unwrap();
    let slots: Vec<u32> = (0..streams).map(|_| dec.alloc_slot().unwrap()).collect();
    let mut st = vec![vec![0f32; cfg.state_len()]; streams];
    let mut scratch = vec![0f32; cfg.scratch_len()];
    let mut want = vec![vec![0f32; v]; streams];
    let mut el = 0f32;
    for t in 0..steps {
        let pairs: Vec<(u32, u32)> = (0..streams)
            .map(|s| {
                let s = if t % 2 == 0 { s } else { streams - 1 - s };
                (slots[s], token(s, t, v))
            })
            .collect();
        dec.step_tokens(&pairs).unwrap();
        for s in 0..streams {
            mamba_core::step_token(
                &view,
                &Scalar,
                &mut st[s],
                &mut scratch,
                token(s, t, v),
                &mut want[s],
            )
            .unwrap();
        }
        if (t + 1) % 250 == 0 || t + 1 == steps {
            let got = dec.logits().unwrap();
            for (i, &(slot, _)) in pairs.iter().enumerate() {
                let s = slots.iter().position(|&x| x == slot).unwrap();
                el = el.max(rel_max(&got[i * v..(i + 1) * v], &want[s]));
            }
        }
    }
    let mut es = 0f32;
    for s in 0..streams {
        es = es.max(rel_max(&dec.save_slot(slots[s]).unwrap(), &st[s]));
    }
    (el, es)
}

fn tolerance(w: DecodeWeights) -> f32 {
    match w {
        DecodeWeights::F32 | DecodeWeights::AsStored => 1e-4,
        _ => 2e-2,
    }
}

#[test]
fn conformance_models_match_the_cpu_after_1000_steps() {
    let Some(gpu) = gpu() else { return };
    for name in CONFORMANCE {
        let m = LoadedModel::open(fixture(name)).unwrap();
        for w in [DecodeWeights::F32, DecodeWeights::F16, DecodeWeights::Bf16] {
            let (el, es) = decode_vs_cpu(gpu, &m, opts(w, 3, usize::MAX), 3, 1000);
            eprintln!(
                "rel {} {name} 1000 steps x 3 streams logits {el:.3e} state {es:.3e}",
                w.name()
            );
            let tol = tolerance(w);
            assert!(
                el <= tol && es <= tol,
                "{name} {}: logits {el}, state {es} over {tol}",
                w.name()
            );
        }
    }
}

/// The cuBLAS path (batch at or above `gemm_min_batch`) on the conformance models.
#[test]
fn conformance_models_through_cublas() {
    let Some(gpu) = gpu() else { return };
    for name in ["base", "dstate8_k3", "expand3_rank5"] {
        let m = LoadedModel::open(fixture(name)).unwrap();
        for w in [DecodeWeights::F32, DecodeWeights::F16, DecodeWeights::Bf16] {
            let (el, es) = decode_vs_cpu(gpu, &m, opts(w, 4, 2), 4, 300);
            eprintln!(
                "rel {} {name} cublas 300 steps x 4 streams logits {el:.3e} state {es:.3e}",
                w.name()
            );
            let tol = tolerance(w);
            assert!(
                el <= tol && es <= tol,
                "{name} {} cublas: {el} {es} over {tol}",
                w.name()
            );
        }
    }
}

/// Random models with biases, untied heads, and Q8_0 / Q4_0 files whose
/// dt_proj (8 columns) falls back to F16: the GPU reads the file as stored
/// and must match mamba-core on the same weights.
#[test]
fn random_models_mixed_types_and_biases() {
    let Some(gpu) = gpu() else { return };
    for (biases, dtype) in [
        (true, DType::Q8_0),
        (false, DType::Q4_0),
        (true, DType::F16),
        (false, DType::BF16),
        (true, DType::F32),
    ] {
        let m = LoadedModel::from_aligned(random_model(&random_cfg(biases), dtype, 7).to_bytes())
            .unwrap();
        let label = format!(
            "random_{}_{}",
            if biases { "bias" } else { "nobias" },
            dtype.name()
        );
        let (el, es) = decode_vs_cpu(
            gpu,
            &m,
            opts(DecodeWeights::AsStored, 4, usize::MAX),
            4,
            1000,
        );
        eprintln!("rel stored {label} 1000 steps x 4 streams logits {el:.3e} state {es:.3e}");
        assert!(el <= 1e-4 && es <= 1e-4, "{label}: logits {el}, state {es}");
        if matches!(dtype, DType::F16 | DType::BF16 | DType::F32) {
            let (el, es) = decode_vs_cpu(gpu, &m, opts(DecodeWeights::AsStored, 4, 1), 4, 300);
            eprintln!(
                "rel stored {label} cublas 300 steps x 4 streams logits {el:.3e} state {es:.3e}"
            );
            let tol = if dtype == DType::F32 { 1e-4 } else { 2e-2 };
            assert!(
                el <= tol && es <= tol,
                "{label} cublas: logits {el}, state {es}"
            );
        }
    }
}

/// A prompt prefilled on the GPU (`GpuModel`, f32) then decoded equals the
/// whole sequence decoded step by step.
#[test]
fn prefill_then_decode_equals_decode_only() {
    let Some(gpu) = gpu() else { return };
    for name in ["base", "dstate8_k3", "noconvbias_k2"] {
        let m = LoadedModel::open(fixture(name)).unwrap();
        let view = m.view();
        let v = m.config().vocab_size;
        let toks: Vec<u32> = (0..120).map(|t| token(5, t, v)).collect();
        let (prompt, rest) = toks.split_at(70);
        let gm = GpuModel::upload(gpu, &view, GemmPrecision::F32).unwrap();
        let (_, state) = gm.prefill(prompt, 1, None, LogitsWanted::None).unwrap();
        let mut dec = GpuDecoder::new(gpu, &view, opts(DecodeWeights::F32, 2, usize::MAX)).unwrap();
        let (a, b) = (dec.alloc_slot().unwrap(), dec.alloc_slot().unwrap());
        dec.load_slot(a, &state).unwrap();
        for &t in prompt {
            dec.step_tokens(&[(b, t)]).unwrap();
        }
        let mut worst = 0f32;
        for &t in rest {
            dec.step_tokens(&[(a, t), (b, t)]).unwrap();
            let lg = dec.logits().unwrap();
            worst = worst.max(rel_max(&lg[..v], &lg[v..]));
        }
        let es = rel_max(&dec.save_slot(a).unwrap(), &dec.save_slot(b).unwrap());
        eprintln!("rel f32 prefill-then-decode {name}: logits {worst:.3e} state {es:.3e}");
        assert!(worst <= 1e-4 && es <= 1e-4, "{name}: {worst} {es}");
    }
}
