//! Whole-model GPU prefill (mamba-cuda's `GpuModel`) against mamba-core's f32
//! step path (`step_token` with `Scalar`) over the same weights: the
//! conformance models and random models with every optional tensor, in every
//! GEMM precision; chunked prefill against one call; a GPU-prefilled state
//! continued on the CPU. Skips without a GPU (prints why); with
//! `MAMBA_REQUIRE_GPU=1` a missing GPU fails instead.
//!
//! Lines starting with `rel ` give the measured errors (parsed by the device script).
#![cfg(feature = "cuda")]

mod common;

use common::cuda::{CONFORMANCE, fixture, gpu, random_cfg};
use common::rel_max;
use mamba_core::{DType, Scalar};
use mamba_cuda::{GemmPrecision, GpuContext, GpuModel, LogitsWanted};
use mamba_rt::LoadedModel;
use mamba_rt::cpu::random_model::random_model;

const ALL: [GemmPrecision; 4] = [
    GemmPrecision::F32,
    GemmPrecision::Tf32,
    GemmPrecision::F16,
    GemmPrecision::Bf16,
];

/// Relative error limit of each precision (the issue's: 1e-4 exact, 2e-2 reduced).
fn tolerance(p: GemmPrecision) -> f32 {
    match p {
        GemmPrecision::F32 => 1e-4,
        _ => 2e-2,
    }
}

fn tokens(n: usize, v: usize, salt: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 7919 + 13 + salt * 104_729) % v) as u32)
        .collect()
}

/// CPU reference: every position's logits and the final state, from `state`.
fn cpu_run(m: &LoadedModel, toks: &[u32], state: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
    let view = m.view();
    let cfg = m.config();
    let v = cfg.vocab_size;
    let mut st = state.map_or_else(|| vec![0f32; cfg.state_len()], <[f32]>::to_vec);
    let mut scratch = vec![0f32; cfg.scratch_len()];
    let mut out = vec![0f32; toks.len() * v];
    for (t, row) in toks.iter().zip(out.chunks_exact_mut(v)) {
        mamba_core::step_token(&view, &Scalar, &mut st, &mut scratch, *t, row).unwrap();
    }
    (out, st)
}

/// Batch 2 (two different sequences of `len`) in every precision against the
/// CPU (computed once); prints the relative errors, fails over the tolerance.
fn check_model(gpu: &GpuContext, label: &str, m: &LoadedModel, len: usize) {
    let v = m.config().vocab_size;
    let seqs = [tokens(len, v, 1), tokens(len, v, 2)];
    let refs: Vec<(Vec<f32>, Vec<f32>)> = seqs.iter().map(|s| cpu_run(m, s, None)).collect();
    for p in ALL {
        check_precision(gpu, label, m, &seqs, &refs, p);
    }
}

fn check_precision(
    gpu: &GpuContext,
    label: &str,
    m: &LoadedModel,
    seqs: &[Vec<u32>],
    refs: &[(Vec<f32>, Vec<f32>)],
    p: GemmPrecision,
) {
    let cfg = m.config();
    let v = cfg.vocab_size;
    let len = seqs[0].len();
    let gm = GpuModel::upload(gpu, &m.view(), p).unwrap();
    let flat: Vec<u32> = seqs.concat();
    let (logits, state) = gm.prefill(&flat, 2, None, LogitsWanted::All).unwrap();
    let (last, _) = gm.prefill(&flat, 2, None, LogitsWanted::Last).unwrap();
    let (mut el, mut es, mut elast) = (0f32, 0f32, 0f32);
    for (b, (want, want_state)) in refs.iter().enumerate() {
        let got = &logits[b * len * v..(b + 1) * len * v];
        el = el.max(rel_max(got, want));
        let per = cfg.state_len();
        es = es.max(rel_max(&state[b * per..(b + 1) * per], want_state));
        elast = elast.max(rel_max(&last[b * v..(b + 1) * v], &want[(len - 1) * v..]));
    }
    eprintln!(
        "rel {} {label} L={len} logits {el:.3e} last {elast:.3e} state {es:.3e}",
        p.name()
    );
    let tol = tolerance(p);
    assert!(
        el <= tol && elast <= tol && es <= tol,
        "{label} {}: logits {el}, last {elast}, state {es} over {tol}",
        p.name()
    );
}

#[test]
fn conformance_models_match_the_cpu_step_path() {
    let Some(gpu) = gpu() else { return };
    for name in CONFORMANCE {
        let m = LoadedModel::open(fixture(name)).unwrap();
        check_model(gpu, name, &m, 45);
    }
}

#[test]
fn random_models_with_biases_and_long_sequences() {
    let Some(gpu) = gpu() else { return };
    for (biases, dtype, len) in [
        (true, DType::F16, 700),
        (false, DType::F32, 1500),
        (true, DType::Q8_0, 300),
    ] {
        let m = LoadedModel::from_aligned(random_model(&random_cfg(biases), dtype, 7).to_bytes())
            .unwrap();
        let label = format!(
            "random_{}_{}",
            if biases { "bias" } else { "nobias" },
            dtype.name()
        );
        check_model(gpu, &label, &m, len);
    }
}

/// Two prefill calls with the state carried (through the host) equal one
/// call; the state after the first continues on the CPU like CPU-only.
#[test]
fn chunked_prefill_and_cpu_continuation() {
    let Some(gpu) = gpu() else { return };
    for name in ["base", "dstate8_k3", "noconvbias_k2"] {
        let m = LoadedModel::open(fixture(name)).unwrap();
        let v = m.config().vocab_size;
        let toks = tokens(50, v, 3);
        let (cut, rest) = toks.split_at(17);
        let (want_all, want_state) = cpu_run(&m, &toks, None);
        for p in [GemmPrecision::F32, GemmPrecision::Bf16] {
            let gm = GpuModel::upload(gpu, &m.view(), p).unwrap();
            let (one, one_state) = gm.prefill(&toks, 1, None, LogitsWanted::All).unwrap();
            let (a, sa) = gm.prefill(cut, 1, None, LogitsWanted::All).unwrap();
            let (b, sb) = gm.prefill(rest, 1, Some(&sa), LogitsWanted::All).unwrap();
            let two: Vec<f32> = [a, b].concat();
            let e_chunks = rel_max(&two, &one);
            let e_chunk_state = rel_max(&sb, &one_state);
            let e_cpu = rel_max(&two, &want_all);
            let e_cpu_state = rel_max(&sb, &want_state);
            // The CPU continues from the GPU's state after the first chunk.
            let (cont, cont_state) = cpu_run(&m, rest, Some(&sa));
            let e_cont = rel_max(&cont, &want_all[cut.len() * v..]);
            let e_cont_state = rel_max(&cont_state, &want_state);
            eprintln!(
                "rel {} chunked_{name} two-vs-one {e_chunks:.3e} state {e_chunk_state:.3e} vs-cpu {e_cpu:.3e} \
                 state {e_cpu_state:.3e} cpu-continuation {e_cont:.3e} state {e_cont_state:.3e}",
                p.name()
            );
            let tol = tolerance(p);
            for e in [
                e_chunks,
                e_chunk_state,
                e_cpu,
                e_cpu_state,
                e_cont,
                e_cont_state,
            ] {
                assert!(e <= tol, "{name} {}: {e} over {tol}", p.name());
            }
        }
    }
}

/// Bad inputs are errors, not panics.
#[test]
fn bad_inputs_are_errors() {
    let Some(gpu) = gpu() else { return };
    let m = LoadedModel::open(fixture("base")).unwrap();
    let gm = GpuModel::upload(gpu, &m.view(), GemmPrecision::F32).unwrap();
    assert!(gm.prefill(&[1, 2, 3], 2, None, LogitsWanted::All).is_err());
    assert!(
        gm.prefill(&[1, 100_000], 1, None, LogitsWanted::All)
            .is_err()
    );
    assert!(
        gm.prefill(&[1, 2], 1, Some(&[0.0; 3]), LogitsWanted::All)
            .is_err()
    );
    assert!(gm.prefill(&[], 1, None, LogitsWanted::All).is_err());
}
