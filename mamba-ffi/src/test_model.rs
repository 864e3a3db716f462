//! Small random-weight mamba GGUF files for tests and examples (no trained model
//! needed). Deterministic: the same spec gives the same bytes. Shared by the unit
//! tests and `examples/make_test_model.rs` (included there by path).

use mamba_core::DType;
use mamba_rt::gguf_write::{GgufWriter, MetaValue, TensorData, encode};

/// Shape and seed of a test model.
#[derive(Debug, Clone, Copy)]
pub struct TestModelSpec {
    /// V
    pub vocab: usize,
    /// D
    pub d_model: usize,
    /// Blocks.
    pub n_layer: usize,
    /// N
    pub d_state: usize,
    /// K
    pub d_conv: usize,
    /// Weight seed: models with other seeds have the same shape, other weights.
    pub seed: u64,
}

impl Default for TestModelSpec {
    fn default() -> Self {
        TestModelSpec {
            vocab: 256,
            d_model: 64,
            n_layer: 2,
            d_state: 8,
            d_conv: 4,
            seed: 1,
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        // SplitMix64, top 24 bits to [0, 1).
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
    /// `n` values uniform in [-a, a).
    fn uniform(&mut self, n: usize, a: f32) -> Vec<f32> {
        (0..n).map(|_| (self.next() * 2.0 - 1.0) * a).collect()
    }
}

/// Build the GGUF writer for `spec` (f32 weights, tied head, conv bias, byte-level:
/// no tokenizer metadata).
pub fn writer(spec: &TestModelSpec) -> GgufWriter {
    let (v, d, nl, n, k) = (
        spec.vocab,
        spec.d_model,
        spec.n_layer,
        spec.d_state,
        spec.d_conv,
    );
    let e = 2 * d;
    let r = d.div_ceil(16);
    let mut rng = Rng(spec.seed);
    let mut w = GgufWriter::new();
    let u32kv = |w: &mut GgufWriter, key: &str, x: usize| w.kv(key, MetaValue::U32(x as u32));
    w.kv("general.architecture", MetaValue::Str("mamba".into()));
    w.kv("general.name", MetaValue::Str("mamba-ffi-test".into()));
    w.kv("general.file_type", MetaValue::U32(0));
    u32kv(&mut w, "mamba.context_length", 1 << 20);
    u32kv(&mut w, "mamba.embedding_length", d);
    u32kv(&mut w, "mamba.feed_forward_length", 0);
    u32kv(&mut w, "mamba.attention.head_count", 0);
    u32kv(&mut w, "mamba.block_count", nl);
    u32kv(&mut w, "mamba.ssm.conv_kernel", k);
    u32kv(&mut w, "mamba.ssm.inner_size", e);
    u32kv(&mut w, "mamba.ssm.state_size", n);
    u32kv(&mut w, "mamba.ssm.time_step_rank", r);
    w.kv(
        "mamba.attention.layer_norm_rms_epsilon",
        MetaValue::F32(1e-5),
    );
    let put = |w: &mut GgufWriter, name: String, vals: Vec<f32>, dims: Vec<u64>| {
        w.tensor(TensorData {
            name,
            dtype: DType::F32,
            dims,
            data: encode(&vals, DType::F32),
        })
    };
    let du = |x: usize| x as u64;
    put(
        &mut w,
        "token_embd.weight".into(),
        rng.uniform(v * d, 0.15),
        vec![du(d), du(v)],
    );
    put(
        &mut w,
        "output_norm.weight".into(),
        vec![1.0; d],
        vec![du(d)],
    );
    for i in 0..nl {
        let g = |s: &str| format!("blk.{i}.{s}");
        put(&mut w, g("attn_norm.weight"), vec![1.0; d], vec![du(d)]);
        let a_in = 1.0 / (d as f32).sqrt();
        put(
            &mut w,
            g("ssm_in.weight"),
            rng.uniform(2 * e * d, a_in),
            vec![du(d), du(2 * e)],
        );
        put(
            &mut w,
            g("ssm_conv1d.weight"),
            rng.uniform(e * k, 0.5),
            vec![du(k), du(e)],
        );
        put(
            &mut w,
            g("ssm_conv1d.bias"),
            rng.uniform(e, 0.1),
            vec![du(e)],
        );
        let a_e = 1.0 / (e as f32).sqrt();
        put(
            &mut w,
            g("ssm_x.weight"),
            rng.uniform((r + 2 * n) * e, a_e),
            vec![du(e), du(r + 2 * n)],
        );
        put(
            &mut w,
            g("ssm_dt.weight"),
            rng.uniform(e * r, 1.0 / (r as f32).sqrt()),
            vec![du(r), du(e)],
        );
        // dt in [0.001, 0.1] after softplus: bias = log(expm1(dt)).
        let dt_b: Vec<f32> = (0..e)
            .map(|_| {
                let dt = 0.001f32 * (100.0f32).powf(rng.next());
                dt.exp_m1().ln()
            })
            .collect();
        put(&mut w, g("ssm_dt.bias"), dt_b, vec![du(e)]);
        // A = -exp(A_log) with A_log = log(1..N), as mamba initialises it.
        let a: Vec<f32> = (0..e * n).map(|j| -((j % n + 1) as f32)).collect();
        put(&mut w, g("ssm_a"), a, vec![du(n), du(e)]);
        put(&mut w, g("ssm_d"), vec![1.0; e], vec![du(e)]);
        put(
            &mut w,
            g("ssm_out.weight"),
            rng.uniform(d * e, a_e),
            vec![du(e), du(d)],
        );
    }
    w
}

/// The GGUF bytes for `spec`.
pub fn gguf_bytes(spec: &TestModelSpec) -> Vec<u8> {
    writer(spec).to_bytes().as_slice().to_vec()
}
