//! Helpers shared by the integration tests.
#![allow(dead_code)]

use mamba_core::{DType, ModelConfig};
use mamba_rt::gguf_write::{GgufWriter, add_f32, add_matrix, write_mamba_metadata};
use std::path::{Path, PathBuf};

#[cfg(feature = "cuda")]
pub mod cuda;

/// Deterministic pseudo-random values in [-scale, scale).
pub fn rand_vec(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut r = mamba_core::sample::Rng::new(seed);
    (0..n).map(|_| (r.next_f32() * 2.0 - 1.0) * scale).collect()
}

/// Shape of a small test model.
#[derive(Clone, Copy, Debug)]
pub struct Tiny {
    pub d: usize,
    pub layers: usize,
    pub e: usize,
    pub n: usize,
    pub k: usize,
    pub r: usize,
    pub v: usize,
    pub tied: bool,
    pub dtype: DType,
}

impl Default for Tiny {
    fn default() -> Self {
        Tiny {
            d: 32,
            layers: 2,
            e: 64,
            n: 8,
            k: 4,
            r: 3,
            v: 40,
            tied: true,
            dtype: DType::F32,
        }
    }
}

/// A random small `mamba` GGUF (all tensors llama.cpp writes, conv bias on).
pub fn tiny_writer(t: Tiny, seed: u64) -> GgufWriter {
    let mut w = GgufWriter::new();
    let cfg = mamba_core::ModelConfig {
        d_model: t.d,
        n_layer: t.layers,
        d_inner: t.e,
        d_state: t.n,
        d_conv: t.k,
        dt_rank: t.r,
        vocab_size: t.v,
        eps: 1e-5,
        in_proj_bias: false,
        out_proj_bias: false,
        conv_bias: true,
        tied_head: t.tied,
        dt_b_c_rms: false,
    };
    write_mamba_metadata(&mut w, &cfg, "tiny", t.dtype);
    let mut s = seed;
    let mut next = |n: usize, scale: f32| {
        s += 1;
        rand_vec(s, n, scale)
    };
    let mat = |w: &mut GgufWriter, name: String, vals: Vec<f32>, rows: usize, cols: usize| {
        add_matrix(w, name, &vals, rows, cols, t.dtype)
    };
    let vec32 = |w: &mut GgufWriter, name: String, vals: Vec<f32>, dims: Vec<u64>| {
        add_f32(w, name, &vals, dims)
    };
    mat(
        &mut w,
        "token_embd.weight".into(),
        next(t.v * t.d, 1.0),
        t.v,
        t.d,
    );
    vec32(
        &mut w,
        "output_norm.weight".into(),
        next(t.d, 0.2).iter().map(|x| 1.0 + x).collect(),
        vec![t.d as u64],
    );
    if !t.tied {
        mat(
            &mut w,
            "output.weight".into(),
            next(t.v * t.d, 0.5),
            t.v,
            t.d,
        );
    }
    for i in 0..t.layers {
        let g = |s: &str| format!("blk.{i}.{s}");
        vec32(
            &mut w,
            g("attn_norm.weight"),
            next(t.d, 0.2).iter().map(|x| 1.0 + x).collect(),
            vec![t.d as u64],
        );
        mat(
            &mut w,
            g("ssm_in.weight"),
            next(2 * t.e * t.d, 0.3),
            2 * t.e,
            t.d,
        );
        vec32(
            &mut w,
            g("ssm_conv1d.weight"),
            next(t.e * t.k, 0.5),
            vec![t.k as u64, t.e as u64],
        );
        vec32(
            &mut w,
            g("ssm_conv1d.bias"),
            next(t.e, 0.1),
            vec![t.e as u64],
        );
        mat(
            &mut w,
            g("ssm_x.weight"),
            next((t.r + 2 * t.n) * t.e, 0.3),
            t.r + 2 * t.n,
            t.e,
        );
        mat(&mut w, g("ssm_dt.weight"), next(t.e * t.r, 0.5), t.e, t.r);
        vec32(
            &mut w,
            g("ssm_dt.bias"),
            next(t.e, 1.0).iter().map(|x| x - 2.0).collect(),
            vec![t.e as u64],
        );
        let a: Vec<f32> = next(t.e * t.n, 1.0)
            .iter()
            .map(|x| -(x + 1.5).exp())
            .collect();
        vec32(&mut w, g("ssm_a"), a, vec![t.n as u64, t.e as u64]);
        vec32(&mut w, g("ssm_d"), next(t.e, 1.0), vec![t.e as u64]);
        mat(&mut w, g("ssm_out.weight"), next(t.d * t.e, 0.3), t.d, t.e);
    }
    w
}

/// GGUF bytes of a tiny random model.
pub fn tiny_gguf(t: Tiny, seed: u64) -> Vec<u8> {
    let mut v = Vec::new();
    tiny_writer(t, seed).write_to(&mut v).unwrap();
    v
}

/// A fresh temporary directory under the target dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Relative L2 error of `a` against reference `r`.
pub fn rel_err(a: &[f32], r: &[f64]) -> f64 {
    assert_eq!(a.len(), r.len(), "length mismatch");
    let mut num = 0.0;
    let mut den = 0.0;
    for (&x, &y) in a.iter().zip(r) {
        assert!(x.is_finite(), "non-finite output");
        num += (x as f64 - y) * (x as f64 - y);
        den += y * y;
    }
    (num / den.max(1e-300)).sqrt()
}

/// max |a - b| / max |b|. `f32::max` drops a NaN operand, so a NaN (or
/// infinity) in `a` counts as an infinite error instead of vanishing.
pub fn rel_max(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let m = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let e = a.iter().zip(b).fold(0f32, |e, (x, y)| {
        if x.is_finite() {
            e.max((x - y).abs())
        } else {
            f32::INFINITY
        }
    });
    e / m
}

/// A small random-model shape (D 128, 3 layers, E 256, V 300) with `d_state`
/// states; `biases` turns every optional bias on (conv bias and tied head
/// off), `dt_b_c_rms` the dt/B/C norms.
pub fn small_cfg(d_state: usize, biases: bool, dt_b_c_rms: bool) -> ModelConfig {
    ModelConfig {
        d_model: 128,
        n_layer: 3,
        d_inner: 256,
        d_state,
        d_conv: 4,
        dt_rank: 8,
        vocab_size: 300,
        eps: 1e-5,
        in_proj_bias: biases,
        out_proj_bias: biases,
        conv_bias: !biases,
        tied_head: !biases,
        dt_b_c_rms,
    }
}

/// Read little-endian f64 values.
pub fn read_f64(p: &Path) -> Vec<f64> {
    std::fs::read(p)
        .unwrap()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Read little-endian f32 values.
pub fn read_f32(p: &Path) -> Vec<f32> {
    std::fs::read(p)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The conformance fixture folders.
pub fn fixtures() -> Vec<PathBuf> {
    let dir = repo().join("tests/fixtures/conformance");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").exists())
        .collect();
    v.sort();
    v
}
