//! Truncated, corrupt, wrong-shape, missing-tensor, wrong-architecture, absurd-size and
//! misaligned model files: each gives an error that names the problem, never a panic.

mod common;

use common::*;
use mamba_core::{DType, Scalar};
use mamba_rt::gguf_write::{MetaValue, TensorData};
use mamba_rt::{LoadedModel, Session};

fn load_err(bytes: &[u8]) -> String {
    match LoadedModel::from_gguf_bytes(bytes) {
        Ok(_) => panic!("loaded a bad file"),
        Err(e) => e.to_string(),
    }
}

fn expect(bytes: &[u8], needle: &str) {
    let e = load_err(bytes);
    assert!(
        e.contains(needle),
        "error '{e}' does not mention '{needle}'"
    );
}

#[test]
fn valid_file_loads() {
    let m = LoadedModel::from_gguf_bytes(&tiny_gguf(Tiny::default(), 1)).unwrap();
    assert_eq!(m.config().d_model, 32);
}

#[test]
fn bad_magic_and_version() {
    let mut b = tiny_gguf(Tiny::default(), 1);
    b[0] = b'X';
    expect(&b, "not a GGUF file");
    let mut b = tiny_gguf(Tiny::default(), 1);
    b[4..8].copy_from_slice(&99u32.to_le_bytes());
    expect(&b, "unsupported GGUF version 99");
    expect(&[], "truncated");
}

#[test]
fn truncated_everywhere() {
    let b = tiny_gguf(Tiny::default(), 1);
    // Every cut point in the header and tables, and a spread through the data.
    let mut cuts: Vec<usize> = (0..2000.min(b.len())).collect();
    cuts.extend((2000..b.len()).step_by(97));
    for cut in cuts {
        let e = load_err(&b[..cut]);
        assert!(
            e.contains("truncated") || e.contains("outside the file"),
            "cut at {cut}: '{e}'"
        );
    }
    let e = load_err(&b[..b.len() - 1]);
    assert!(e.contains("outside the file"), "{e}");
}

#[test]
fn wrong_architecture() {
    let mut w = tiny_writer(Tiny::default(), 1);
    w.set_kv("general.architecture", MetaValue::Str("llama".into()));
    let mut b = Vec::new();
    w.write_to(&mut b).unwrap();
    expect(&b, "wrong architecture 'llama'");
}

#[test]
fn missing_key_and_tensor() {
    let mut w = tiny_writer(Tiny::default(), 1);
    w.remove_tensor("blk.1.ssm_d");
    let mut b = Vec::new();
    w.write_to(&mut b).unwrap();
    expect(&b, "missing tensor 'blk.1.ssm_d'");

    let t = Tiny::default();
    let mut w = tiny_writer(t, 1);
    w.set_kv("mamba.ssm.state_size", MetaValue::Str("sixteen".into()));
    let mut b = Vec::new();
    w.write_to(&mut b).unwrap();
    expect(&b, "mamba.ssm.state_size");
}

#[test]
fn wrong_shape() {
    let mut w = tiny_writer(Tiny::default(), 1);
    let t = w.tensor_mut("blk.0.ssm_x.weight").unwrap();
    // Same bytes, transposed dims: (E, R+2N) read as (R+2N, E).
    t.dims.reverse();
    let mut b = Vec::new();
    w.write_to(&mut b).unwrap();
    expect(&b, "tensor 'blk.0.ssm_x.weight' has shape");

    // A metadata size that disagrees with the tensors.
    let mut w = tiny_writer(Tiny::default(), 1);
    w.set_kv("mamba.ssm.inner_size", MetaValue::U32(48));
    let mut b = Vec::new();
    w.write_to(&mut b).unwrap();
    expect(&b, "tensor 'blk.0.ssm_in.weight' has shape");

    // Quantized rows must be whole blocks.
    let mut w = tiny_writer(Tiny::default(), 1);
    let t = w.tensor_mut("blk.0.ssm_dt.weight").unwrap();
    t.dtype = DType::Q8_0;
    let mut b = Vec::new();
    w.write_to(&mut b).unwrap();
    expect(&b, "ssm_dt.weight");
}

#[test]
fn f32_only_tensors_must_be_f32() {
    let mut w = tiny_writer(Tiny::default(), 1);
    let t = w.tensor_mut("blk.0.ssm_a").unwrap();
    let vals: Vec<f32> = t
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    t.dtype = DType::F16;
    t.data = mamba_rt::gguf_write::encode(&vals, DType::F16);
    let mut b = Vec::new();
    w.write_to(&mut b).unwrap();
    expect(&b, "tensor 'blk.0.ssm_a' has unsupported type 1");
}

#[test]
fn absurd_sizes() {
    let b = tiny_gguf(Tiny::default(), 1);
    let mut x = b.clone();
    x[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    expect(&x, "absurd tensor count");
    let mut x = b.clone();
    x[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    expect(&x, "absurd metadata count");
    // The first key's string length.
    let mut x = b.clone();
    x[24..32].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    expect(&x, "truncated");
    // A dimension of 2^50 in the model's metadata.
    let mut w = tiny_writer(Tiny::default(), 1);
    w.set_kv("mamba.block_count", MetaValue::U64(1 << 50));
    let mut y = Vec::new();
    w.write_to(&mut y).unwrap();
    expect(&y, "mamba.block_count");
    // A tensor dimension of 2^41.
    let mut w = tiny_writer(Tiny::default(), 1);
    w.tensor_mut("output_norm.weight").unwrap().dims = vec![1 << 41];
    let mut y = Vec::new();
    w.write_to(&mut y).unwrap();
    expect(&y, "absurd tensor dimension");
}

#[test]
fn misaligned_tensor() {
    // With 2-byte alignment and a 2- or 4-byte tensor first, every f32 tensor after it
    // lands at an address of 2 mod 4, whatever the header length.
    let build = |pad_elems: u64| {
        let mut w = tiny_writer(Tiny::default(), 1);
        w.set_alignment(2);
        let rest = w.tensors().to_vec();
        for t in &rest {
            w.remove_tensor(&t.name);
        }
        let data = vec![0u8; 2 * pad_elems as usize];
        w.tensor(TensorData {
            name: "pad.weight".into(),
            dtype: DType::F16,
            dims: vec![pad_elems],
            data,
        });
        for t in rest {
            w.tensor(t);
        }
        let mut b = Vec::new();
        w.write_to(&mut b).unwrap();
        b
    };
    let b = build(1);
    let start = mamba_core::Gguf::parse(&b).unwrap().data_start;
    let b = if start % 4 == 0 { b } else { build(2) };
    expect(&b, "misaligned");
}

#[test]
fn random_corruption_never_panics() {
    let b = tiny_gguf(
        Tiny {
            v: 16,
            d: 16,
            e: 32,
            ..Tiny::default()
        },
        5,
    );
    let mut rng = mamba_core::sample::Rng::new(99);
    for i in 0..3000 {
        let mut x = b.clone();
        let flips = 1 + (rng.next_u64() % 8) as usize;
        for _ in 0..flips {
            // Mostly the header and tables, where structure lives.
            let span = if i % 2 == 0 {
                1500.min(x.len())
            } else {
                x.len()
            };
            let at = (rng.next_u64() as usize) % span;
            x[at] = rng.next_u64() as u8;
        }
        let r = std::panic::catch_unwind(|| {
            if let Ok(m) = LoadedModel::from_gguf_bytes(&x) {
                let mut s = Session::new(&m);
                let mut l = vec![0f32; m.config().vocab_size];
                let _ = s.step_token(&Scalar, 0, &mut l);
            }
        });
        assert!(r.is_ok(), "panic on corruption case {i}");
    }
}

/// Write a safetensors file from (name, shape, f32 values).
fn write_safetensors(path: &std::path::Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let mut hdr = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, vals) in tensors {
        let start = data.len();
        for v in vals {
            data.extend_from_slice(&v.to_le_bytes());
        }
        hdr.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let h = serde_json::Value::Object(hdr).to_string();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

fn hf_tensors(
    d: usize,
    e: usize,
    n: usize,
    k: usize,
    r: usize,
    v: usize,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut t = vec![
        (
            "backbone.embeddings.weight".to_string(),
            vec![v, d],
            rand_vec(1, v * d, 1.0),
        ),
        ("backbone.norm_f.weight".to_string(), vec![d], vec![1.0; d]),
        (
            "backbone.layers.0.norm.weight".to_string(),
            vec![d],
            vec![1.0; d],
        ),
    ];
    let m = |s: &str| format!("backbone.layers.0.mixer.{s}");
    t.push((
        m("in_proj.weight"),
        vec![2 * e, d],
        rand_vec(2, 2 * e * d, 0.3),
    ));
    t.push((m("conv1d.weight"), vec![e, 1, k], rand_vec(3, e * k, 0.3)));
    t.push((m("conv1d.bias"), vec![e], rand_vec(4, e, 0.1)));
    t.push((
        m("x_proj.weight"),
        vec![r + 2 * n, e],
        rand_vec(5, (r + 2 * n) * e, 0.3),
    ));
    t.push((m("dt_proj.weight"), vec![e, r], rand_vec(6, e * r, 0.3)));
    t.push((m("dt_proj.bias"), vec![e], rand_vec(7, e, 0.3)));
    t.push((m("A_log"), vec![e, n], rand_vec(8, e * n, 0.3)));
    t.push((m("D"), vec![e], rand_vec(9, e, 0.3)));
    t.push((m("out_proj.weight"), vec![d, e], rand_vec(10, d * e, 0.3)));
    t
}

fn hf_dir(
    name: &str,
    config: serde_json::Value,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> std::path::PathBuf {
    let dir = temp_dir(name);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let refs: Vec<(&str, Vec<usize>, Vec<f32>)> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.clone(), v.clone()))
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &refs);
    dir
}

fn hf_err(dir: &std::path::Path) -> String {
    LoadedModel::open(dir).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn hf_folder_errors_name_the_problem() {
    let cfg = serde_json::json!({"hidden_size": 8, "num_hidden_layers": 1, "state_size": 4, "conv_kernel": 3});
    let good = hf_tensors(8, 16, 4, 3, 2, 10);
    let dir = hf_dir("hf-good", cfg.clone(), &good);
    let m = LoadedModel::open(&dir).unwrap();
    assert_eq!(m.config().d_inner, 16);

    // Missing config.
    let d = temp_dir("hf-noconfig");
    assert!(hf_err(&d).contains("config.json"));
    // Config that is not JSON.
    std::fs::write(d.join("config.json"), "{not json").unwrap();
    assert!(hf_err(&d).contains("not valid JSON"));
    // No weights.
    std::fs::write(d.join("config.json"), "{}").unwrap();
    assert!(hf_err(&d).contains("no model.safetensors"));
    // Config disagreeing with the tensors.
    let bad_cfg = serde_json::json!({"hidden_size": 8, "num_hidden_layers": 1, "state_size": 16});
    let d = hf_dir("hf-badcfg", bad_cfg, &good);
    assert!(
        hf_err(&d).contains("state_size = 16 but the tensors say 4"),
        "{}",
        hf_err(&d)
    );
    // Missing tensor.
    let mut t = good.clone();
    t.retain(|(n, _, _)| !n.ends_with("mixer.D"));
    let d = hf_dir("hf-missing", cfg.clone(), &t);
    assert!(
        hf_err(&d).contains("missing tensor 'backbone.layers.0.mixer.D'"),
        "{}",
        hf_err(&d)
    );
    // Wrong shape.
    let mut t = good.clone();
    for x in t.iter_mut() {
        if x.0.ends_with("x_proj.weight") {
            x.1 = vec![16, 10];
        }
    }
    let d = hf_dir("hf-shape", cfg.clone(), &t);
    assert!(
        hf_err(&d).contains("x_proj.weight' has shape [16, 10]"),
        "{}",
        hf_err(&d)
    );
    // Truncated safetensors.
    let d = hf_dir("hf-trunc", cfg, &good);
    let p = d.join("model.safetensors");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 10]).unwrap();
    assert!(hf_err(&d).contains("outside the file"), "{}", hf_err(&d));
    std::fs::write(&p, &b[..4]).unwrap();
    assert!(hf_err(&d).contains("shorter than its 8-byte header"));
    let mut c = b.clone();
    c[0..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&p, &c).unwrap();
    assert!(hf_err(&d).contains("exceeds the file"));
}

#[test]
fn cli_reports_errors_without_panicking() {
    let dir = temp_dir("cli-bad");
    let p = dir.join("bad.gguf");
    std::fs::write(&p, b"GGUF\x03\x00\x00\x00").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mamba-cli"))
        .args(["info", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated") && err.contains("bad.gguf"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn absent_conv_bias_equals_zero_conv_bias() {
    // GGUF files from other writers may leave the conv bias out; it must act as zeros.
    let mut with = tiny_writer(Tiny::default(), 4);
    let mut without = tiny_writer(Tiny::default(), 4);
    for i in 0..Tiny::default().layers {
        let name = format!("blk.{i}.ssm_conv1d.bias");
        let t = with.tensor_mut(&name).unwrap();
        t.data.iter_mut().for_each(|b| *b = 0);
        without.remove_tensor(&name);
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    with.write_to(&mut a).unwrap();
    without.write_to(&mut b).unwrap();
    let ma = LoadedModel::from_gguf_bytes(&a).unwrap();
    let mb = LoadedModel::from_gguf_bytes(&b).unwrap();
    assert!(ma.config().conv_bias && !mb.config().conv_bias);
    let (mut sa, mut sb) = (Session::new(&ma), Session::new(&mb));
    let v = ma.config().vocab_size;
    let (mut la, mut lb) = (vec![0f32; v], vec![0f32; v]);
    for t in [3u32, 1, 4, 1, 5] {
        sa.step_token(&Scalar, t, &mut la).unwrap();
        sb.step_token(&Scalar, t, &mut lb).unwrap();
        assert_eq!(la, lb);
    }
}

#[test]
fn old_conv_layout_with_singleton_middle_dim_loads() {
    // Older llama.cpp files store the conv as {K, 1, E}; the same bytes must give the
    // same model as the squeezed {K, E}.
    let t = Tiny::default();
    let new = tiny_writer(t, 6);
    let mut old = tiny_writer(t, 6);
    for i in 0..t.layers {
        old.tensor_mut(&format!("blk.{i}.ssm_conv1d.weight"))
            .unwrap()
            .dims = vec![t.k as u64, 1, t.e as u64];
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    new.write_to(&mut a).unwrap();
    old.write_to(&mut b).unwrap();
    let (ma, mb) = (
        LoadedModel::from_gguf_bytes(&a).unwrap(),
        LoadedModel::from_gguf_bytes(&b).unwrap(),
    );
    let (mut sa, mut sb) = (Session::new(&ma), Session::new(&mb));
    let (mut la, mut lb) = (vec![0f32; t.v], vec![0f32; t.v]);
    for tok in [7u32, 0, 9] {
        sa.step_token(&Scalar, tok, &mut la).unwrap();
        sb.step_token(&Scalar, tok, &mut lb).unwrap();
        assert_eq!(la, lb);
    }
    // A middle dim other than 1 is a shape error.
    let mut bad = tiny_writer(t, 6);
    bad.tensor_mut("blk.0.ssm_conv1d.weight").unwrap().dims = vec![t.k as u64, 2, t.e as u64 / 2];
    let mut c = Vec::new();
    bad.write_to(&mut c).unwrap();
    expect(&c, "ssm_conv1d.weight");
}
