//! Q8_0 and Q4_0 weights on the conformance models: logits against transformers' float64
//! references (relative L2 error, the metric of tests/conformance.rs). Q8_0 must stay
//! within 2e-2; Q4_0's error is printed (the issue asks for it reported, not bounded).

use mamba_core::{DType, Scalar};
use mamba_rt::cpu::CpuKernels;
use mamba_rt::hf::HfCheckpoint;
use mamba_rt::{LoadedModel, Session};
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conformance");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.join("logits.f64").exists() && p.join("tokens.json").exists());
    v.sort();
    v
}

fn rel_l2(a: &[f32], r: &[f64]) -> f64 {
    assert_eq!(a.len(), r.len());
    let num: f64 = a.iter().zip(r).map(|(&x, &y)| (x as f64 - y).powi(2)).sum();
    let den: f64 = r.iter().map(|y| y * y).sum();
    (num / den.max(1e-300)).sqrt()
}

fn logits<K: mamba_core::Kernels>(m: &LoadedModel, k: &K, toks: &[u32]) -> Vec<f32> {
    let v = m.config().vocab_size;
    let mut s = Session::new(m);
    let mut out = vec![0f32; toks.len() * v];
    for (t, row) in toks.iter().zip(out.chunks_exact_mut(v)) {
        s.step_token(k, *t, row).unwrap();
    }
    out
}

#[test]
fn quantized_conformance_logits() {
    let fx = fixtures();
    if fx.is_empty() {
        eprintln!("no conformance fixtures; skipped");
        return;
    }
    let k = CpuKernels::new(2);
    for dir in fx {
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("tokens.json")).unwrap())
                .unwrap();
        let toks: Vec<u32> = j["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        let want: Vec<f64> = std::fs::read(dir.join("logits.f64"))
            .unwrap()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let ck = HfCheckpoint::open(&dir).unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        for dtype in [DType::Q8_0, DType::Q4_0] {
            let m = LoadedModel::from_aligned(ck.to_gguf(dtype).unwrap().to_bytes()).unwrap();
            let e_simd = rel_l2(&logits(&m, &k, &toks), &want);
            let e_scalar = rel_l2(&logits(&m, &Scalar, &toks), &want);
            eprintln!(
                "{name} {}: rel err {e_simd:.3e} ({}), {e_scalar:.3e} (scalar)",
                dtype.name(),
                k.isa().name()
            );
            if dtype == DType::Q8_0 {
                assert!(
                    e_simd <= 2e-2 && e_scalar <= 2e-2,
                    "{name} Q8_0: {e_simd} / {e_scalar}"
                );
            }
        }
    }
}
