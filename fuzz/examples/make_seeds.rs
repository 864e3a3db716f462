//! Writes the seed corpus: small valid inputs for every target (tiny random models in
//! each weight type and option, a tiny HF folder, good and bad state blobs). Kept
//! small on purpose (a few KB each) so the fuzzer mutates structure, not weights.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds` (from the repo root).
//! Deterministic: the same code writes the same files.

#[path = "../harness.rs"]
mod harness;

use mamba_core::{DType, ModelConfig};
use mamba_rt::cpu::random_model::random_model;
use mamba_rt::gguf_write::MetaValue;
use std::path::Path;

fn cfg(d: usize, e: usize, n: usize, k: usize, r: usize, v: usize, layers: usize) -> ModelConfig {
    ModelConfig {
        d_model: d,
        n_layer: layers,
        d_inner: e,
        d_state: n,
        d_conv: k,
        dt_rank: r,
        vocab_size: v,
        eps: 1e-5,
        in_proj_bias: false,
        out_proj_bias: false,
        conv_bias: true,
        tied_head: true,
        dt_b_c_rms: false,
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
    println!("{} ({} bytes)", dir.join(name).display(), bytes.len());
}

/// A tiny safetensors file: tensors in order, f32 or bf16.
fn safetensors(tensors: &[(String, Vec<usize>, Vec<f32>)], bf16: bool) -> Vec<u8> {
    let mut hdr = serde_json_lite(tensors, bf16);
    while !hdr.len().is_multiple_of(8) {
        hdr.push(' ');
    }
    let mut out = (hdr.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(hdr.as_bytes());
    for (_, _, vals) in tensors {
        for v in vals {
            if bf16 {
                out.extend_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes());
            } else {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

fn serde_json_lite(tensors: &[(String, Vec<usize>, Vec<f32>)], bf16: bool) -> String {
    let es = if bf16 { 2 } else { 4 };
    let mut off = 0;
    let mut parts = vec![r#""__metadata__":{"format":"pt"}"#.to_string()];
    for (name, shape, vals) in tensors {
        let end = off + vals.len() * es;
        parts.push(format!(
            r#""{name}":{{"dtype":"{}","shape":{shape:?},"data_offsets":[{off},{end}]}}"#,
            if bf16 { "BF16" } else { "F32" }
        ));
        off = end;
    }
    format!("{{{}}}", parts.join(","))
}

/// Tensors of a tiny HF mamba checkpoint (D 8, E 16, N 2, K 2, R 1, V 8, 1 layer).
fn hf_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let (d, e, n, k, r, v) = (8usize, 16usize, 2usize, 2usize, 1usize, 8usize);
    let mut seed = 1u32;
    let mut vals = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.5
            })
            .collect()
    };
    let l = |s: &str| format!("backbone.layers.0.mixer.{s}");
    vec![
        ("backbone.embeddings.weight".into(), vec![v, d], vals(v * d)),
        ("backbone.norm_f.weight".into(), vec![d], vec![1.0; d]),
        (
            "backbone.layers.0.norm.weight".into(),
            vec![d],
            vec![1.0; d],
        ),
        (l("in_proj.weight"), vec![2 * e, d], vals(2 * e * d)),
        (l("conv1d.weight"), vec![e, 1, k], vals(e * k)),
        (l("conv1d.bias"), vec![e], vals(e)),
        (
            l("x_proj.weight"),
            vec![r + 2 * n, e],
            vals((r + 2 * n) * e),
        ),
        (l("dt_proj.weight"), vec![e, r], vals(e * r)),
        (l("dt_proj.bias"), vec![e], vec![-3.0; e]),
        (
            l("A_log"),
            vec![e, n],
            (0..e * n).map(|i| ((i % n) as f32 + 1.0).ln()).collect(),
        ),
        (l("D"), vec![e], vec![1.0; e]),
        (l("out_proj.weight"), vec![d, e], vals(d * e)),
    ]
}

const HF_CONFIG: &str = r#"{"model_type":"mamba","hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,"state_size":2,"conv_kernel":2,"time_step_rank":1,"vocab_size":8,"layer_norm_epsilon":1e-5,"tie_word_embeddings":true}"#;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let gguf_dir = root.join("fuzz_gguf");
    let ffi_dir = root.join("fuzz_ffi_load");

    // Tiny models: every weight type, biases, an untied head, the falcon-style norms,
    // a tokenizer string array. Q8_0/Q4_0 need 32-column rows to stay quantized.
    let mut small = cfg(8, 16, 2, 2, 1, 8, 1);
    let w = random_model(&small, DType::F32, 1);
    write(&gguf_dir, "tiny-f32.gguf", w.to_bytes().as_slice());
    write(&ffi_dir, "tiny-f32.gguf", w.to_bytes().as_slice());
    write(
        &gguf_dir,
        "tiny-f16.gguf",
        random_model(&small, DType::F16, 2).to_bytes().as_slice(),
    );
    write(
        &gguf_dir,
        "tiny-bf16.gguf",
        random_model(&small, DType::BF16, 3).to_bytes().as_slice(),
    );
    small.in_proj_bias = true;
    small.out_proj_bias = true;
    small.conv_bias = false;
    small.tied_head = false;
    small.dt_b_c_rms = true;
    small.n_layer = 2;
    let mut w = random_model(&small, DType::F32, 4);
    w.kv(
        "tokenizer.ggml.tokens",
        MetaValue::StrArray((0..8).map(|i| format!("t{i}")).collect()),
    );
    w.kv("tokenizer.ggml.token_type", MetaValue::I32Array(vec![1; 8]));
    write(&gguf_dir, "tiny-options.gguf", w.to_bytes().as_slice());
    write(&ffi_dir, "tiny-options.gguf", w.to_bytes().as_slice());
    let q = cfg(32, 32, 2, 4, 2, 4, 1);
    let w = random_model(&q, DType::Q8_0, 5);
    write(&gguf_dir, "tiny-q8_0.gguf", w.to_bytes().as_slice());
    write(&ffi_dir, "tiny-q8_0.gguf", w.to_bytes().as_slice());
    write(
        &gguf_dir,
        "tiny-q4_0.gguf",
        random_model(&q, DType::Q4_0, 6).to_bytes().as_slice(),
    );

    // HF folders, split as harness::split_hf reads them.
    let st_dir = root.join("fuzz_safetensors");
    let t = hf_tensors();
    write(
        &st_dir,
        "tiny-f32",
        &harness::join_hf(0, HF_CONFIG.as_bytes(), &safetensors(&t, false)),
    );
    write(
        &st_dir,
        "tiny-bf16-q8",
        &harness::join_hf(1, HF_CONFIG.as_bytes(), &safetensors(&t, true)),
    );
    let mut untied = t.clone();
    untied.push(("lm_head.weight".into(), vec![8, 8], vec![0.01; 64]));
    let cfg_untied = HF_CONFIG.replace(
        "\"tie_word_embeddings\":true",
        "\"tie_word_embeddings\":false",
    );
    write(
        &st_dir,
        "tiny-untied",
        &harness::join_hf(0, cfg_untied.as_bytes(), &safetensors(&untied, false)),
    );

    // State blobs for harness::state_model(): a good one (raw, mode 0), a header-only
    // one (mode 3 fills the rest), one holding a NaN, a truncated one.
    let m = harness::state_model();
    let mut s = mamba_rt::Session::new(m);
    let mut logits = vec![0.0f32; m.config().vocab_size];
    for tkn in [1u32, 2, 3] {
        s.step_token(harness::kernels(), tkn, &mut logits)
            .expect("step");
    }
    let good = s.save_state();
    let sdir = root.join("fuzz_state");
    let with_mode = |mode: u8, b: &[u8]| [&[mode][..], b].concat();
    write(&sdir, "good", &with_mode(0, &good));
    write(&sdir, "header-only", &with_mode(3, &good[..40]));
    let mut nan = good.clone();
    nan[44..48].copy_from_slice(&f32::NAN.to_le_bytes());
    write(&sdir, "nan", &with_mode(0, &nan));
    write(&sdir, "truncated", &with_mode(0, &good[..good.len() - 3]));

    // Every seed must be a valid input (so the fuzzer starts past the checks) and pass
    // its own harness.
    for f in std::fs::read_dir(&gguf_dir).expect("dir") {
        let b = std::fs::read(f.expect("entry").path()).expect("read");
        assert!(
            harness::loaded_model(&b).is_some(),
            "GGUF seed does not load"
        );
        harness::gguf(&b);
    }
    for f in std::fs::read_dir(&st_dir).expect("dir") {
        let b = std::fs::read(f.expect("entry").path()).expect("read");
        let (_, c, st) = harness::split_hf(&b);
        let d = std::env::temp_dir().join(format!("mamba-seed-check-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("config.json"), c).expect("write");
        std::fs::write(d.join("model.safetensors"), st).expect("write");
        let ck = mamba_rt::hf::HfCheckpoint::open(&d).expect("HF seed opens");
        ck.to_gguf(DType::F32).expect("HF seed converts");
        std::fs::remove_dir_all(&d).expect("rm");
        harness::safetensors(&b);
    }
    assert!(s.load_state(&good).is_ok());
    for f in std::fs::read_dir(&sdir).expect("dir") {
        harness::state(&std::fs::read(f.expect("entry").path()).expect("read"));
    }
}
