//! Random-weight models of any Mamba-1 shape (by default mamba-130m's), written with the
//! GGUF writer: benchmarks and accuracy tests need the exact shapes, not the weights.

use crate::gguf_write::{GgufWriter, add_f32, add_matrix, write_mamba_metadata};
use mamba_core::{DType, ModelConfig};

/// mamba-130m's shape: D 768, 24 layers, V 50280, N 16, K 4, E 1536, R 48, no biases
/// on the projections, conv bias on, tied head.
pub fn shape_130m() -> ModelConfig {
    ModelConfig {
        d_model: 768,
        n_layer: 24,
        d_inner: 1536,
        d_state: 16,
        d_conv: 4,
        dt_rank: 48,
        vocab_size: 50280,
        eps: 1e-5,
        in_proj_bias: false,
        out_proj_bias: false,
        conv_bias: true,
        tied_head: true,
        dt_b_c_rms: false,
    }
}

/// A small deterministic generator (xorshift64*); no dependency needed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn sym(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn uniform(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.sym() * scale).collect()
    }
}

/// Build a GGUF writer holding a random model of shape `c`. The 2-D projections and the
/// embedding are stored as `dtype` (rows that are not a multiple of 32 fall back to F16
/// for the quantized types, as llama.cpp does); everything else is f32. Weights are drawn
/// like the reference initialisation (uniform +-1/sqrt(fan_in), A_log = log(1..N), dt bias
/// the inverse softplus of dt in [1e-3, 1e-1]) so activations keep a realistic range.
pub fn random_model(c: &ModelConfig, dtype: DType, seed: u64) -> GgufWriter {
    let mut rng = Rng::new(seed);
    let (d, e, n, k, r, v) = (
        c.d_model,
        c.d_inner,
        c.d_state,
        c.d_conv,
        c.dt_rank,
        c.vocab_size,
    );
    let mut w = GgufWriter::new();
    write_mamba_metadata(&mut w, c, &format!("random-{seed}"), dtype);
    let mat = |w: &mut GgufWriter, name: String, vals: Vec<f32>, rows: usize, cols: usize| {
        add_matrix(w, name, &vals, rows, cols, dtype)
    };
    let vec32 = |w: &mut GgufWriter, name: String, vals: Vec<f32>, dims: Vec<u64>| {
        add_f32(w, name, &vals, dims)
    };
    let inv = |fan_in: usize| 1.0 / (fan_in as f32).sqrt();
    mat(
        &mut w,
        "token_embd.weight".into(),
        rng.uniform(v * d, 0.1),
        v,
        d,
    );
    let norm_f: Vec<f32> = (0..d).map(|_| 1.0 + 0.1 * rng.sym()).collect();
    vec32(&mut w, "output_norm.weight".into(), norm_f, vec![d as u64]);
    if !c.tied_head {
        mat(
            &mut w,
            "output.weight".into(),
            rng.uniform(v * d, 0.1),
            v,
            d,
        );
    }
    for i in 0..c.n_layer {
        let g = |s: &str| format!("blk.{i}.{s}");
        let norm: Vec<f32> = (0..d).map(|_| 1.0 + 0.1 * rng.sym()).collect();
        vec32(&mut w, g("attn_norm.weight"), norm, vec![d as u64]);
        mat(
            &mut w,
            g("ssm_in.weight"),
            rng.uniform(2 * e * d, inv(d)),
            2 * e,
            d,
        );
        if c.in_proj_bias {
            let b = rng.uniform(2 * e, 0.1);
            vec32(&mut w, g("ssm_in.bias"), b, vec![2 * e as u64]);
        }
        let conv = rng.uniform(e * k, inv(k));
        vec32(
            &mut w,
            g("ssm_conv1d.weight"),
            conv,
            vec![k as u64, e as u64],
        );
        if c.conv_bias {
            let b = rng.uniform(e, inv(k));
            vec32(&mut w, g("ssm_conv1d.bias"), b, vec![e as u64]);
        }
        mat(
            &mut w,
            g("ssm_x.weight"),
            rng.uniform((r + 2 * n) * e, inv(e)),
            r + 2 * n,
            e,
        );
        mat(&mut w, g("ssm_dt.weight"), rng.uniform(e * r, inv(r)), e, r);
        let dt_b: Vec<f32> = (0..e)
            .map(|_| {
                // dt log-uniform in [1e-3, 1e-1]; bias = softplus^-1(dt) = dt + ln(1 - e^-dt).
                let dt = (0.001f32.ln() + (rng.sym() * 0.5 + 0.5) * (100.0f32).ln()).exp();
                dt + (-(-dt).exp_m1()).ln()
            })
            .collect();
        vec32(&mut w, g("ssm_dt.bias"), dt_b, vec![e as u64]);
        let a: Vec<f32> = (0..e * n).map(|j| -((j % n) as f32 + 1.0)).collect();
        vec32(&mut w, g("ssm_a"), a, vec![n as u64, e as u64]);
        vec32(&mut w, g("ssm_d"), vec![1.0; e], vec![e as u64]);
        mat(
            &mut w,
            g("ssm_out.weight"),
            rng.uniform(d * e, inv(e)),
            d,
            e,
        );
        if c.out_proj_bias {
            let b = rng.uniform(d, 0.1);
            vec32(&mut w, g("ssm_out.bias"), b, vec![d as u64]);
        }
    }
    w
}
