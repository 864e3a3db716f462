//! What each fuzz target does with one input, shared by the targets in
//! `fuzz/fuzz_targets/` and by the regression replay in `tests/fuzz_regressions.rs`
//! (both include this file by path), so a crash file replays the exact code path that
//! found it. Each function must return normally for any input: a panic, an abort, an
//! out-of-bounds access or an allocation driven by an unchecked size is a bug.
//!
//! Uses only `mamba_core` and `mamba_rt` (the C ABI target adds its own calls on top of
//! [`loaded_model`]).
#![allow(dead_code)]

use mamba_core::weights::config_from_gguf;
use mamba_core::{DType, Gguf, LayerWeights, Model, ModelConfig, ModelLayout, Scalar};
use mamba_rt::aligned::AlignedBytes;
use mamba_rt::cpu::CpuKernels;
use mamba_rt::hf::HfCheckpoint;
use mamba_rt::{LoadedModel, Session};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Single-threaded CPU kernels on the best SIMD path of this CPU (the scalar path is
/// run separately through `mamba_core::Scalar`).
pub fn kernels() -> &'static CpuKernels {
    static K: OnceLock<CpuKernels> = OnceLock::new();
    K.get_or_init(|| {
        CpuKernels::with_isa(1, mamba_rt::cpu::detect_isa()).unwrap_or_else(|_| CpuKernels::new(1))
    })
}

/// Touch every metadata value and tensor of a parsed GGUF.
fn walk(g: &Gguf<'_>) {
    use mamba_core::gguf::Value;
    for (k, v) in g.metadata() {
        black_box(k.len());
        if let Value::Array(a) = v {
            black_box(a.strings().take(64).map(str::len).sum::<usize>());
            for i in 0..a.len.min(64) {
                black_box((a.get_int(i), a.get_f64(i)));
            }
        } else {
            black_box(v);
        }
    }
    for t in g.tensors() {
        let Ok(t) = t else { continue };
        black_box((t.dtype(), t.n_elements()));
        black_box(g.tensor_bytes(&t).len());
        black_box(g.tensor(t.name).map(|u| u.offset));
    }
}

/// Drive a loaded model: single steps (scalar core and SIMD kernels), a prefill,
/// and a state save/restore round trip.
fn drive_core(model: &Model<'_>, cfg: &ModelConfig) {
    let v = cfg.vocab_size;
    let mut state = vec![0.0f32; cfg.state_len()];
    let mut scratch = vec![0.0f32; cfg.scratch_len()];
    let mut logits = vec![0.0f32; v];
    for (i, &t) in [0u32, (v - 1) as u32, v as u32].iter().enumerate() {
        let r = if i % 2 == 0 {
            mamba_core::step_token(model, &Scalar, &mut state, &mut scratch, t, &mut logits)
        } else {
            mamba_core::step_token(model, kernels(), &mut state, &mut scratch, t, &mut logits)
        };
        // The last token is out of range: it must be an error, not a panic.
        assert_eq!(r.is_err(), t as usize >= v, "token {t} of vocabulary {v}");
    }
    let mut blob = vec![0u8; mamba_core::state::blob_len(cfg)];
    let n = mamba_core::state::export(model, &state, &mut blob).expect("export");
    let mut back = vec![0.0f32; cfg.state_len()];
    // Weights may make the state non-finite, which import rightly refuses.
    if mamba_core::state::import(model, &blob[..n], &mut back).is_ok() {
        assert!(
            state
                .iter()
                .zip(&back)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
}

/// Session-level driving through mamba_rt: the same calls, in the same order, as
/// fuzz_ffi_load makes through the C ABI, so its crash files replay here.
fn drive_session(m: &LoadedModel) {
    let v = m.config().vocab_size;
    let last = (v - 1) as u32;
    let mut s = Session::new(m);
    let mut logits = vec![0.0f32; v];
    s.step_token(kernels(), last, &mut logits).expect("step");
    assert!(s.step_token(kernels(), v as u32, &mut logits).is_err());
    s.prefill_tokens(kernels(), &[0, last, 0], &mut logits)
        .expect("prefill in-range tokens");
    let blob = s.save_state();
    let _ = s.load_state(&blob);
    black_box(m.is_byte_level());
}

/// Largest model bytes the GGUF targets drive through a step: the step's cost grows
/// with the weights, and a fuzz input of a few MB would make each run slow.
const MAX_STEP_BYTES: usize = 1 << 20;

/// fuzz_gguf: the no_std reader, config, layout, `Model::new`, and one step.
pub fn gguf(data: &[u8]) {
    // The reader takes any alignment, the model view needs 4 (libFuzzer's copy is
    // malloc-aligned, a regression file read from disk is too, but be explicit).
    let bytes = AlignedBytes::from_slice(data);
    let data = bytes.as_slice();
    let Ok(g) = Gguf::parse(data) else { return };
    walk(&g);
    let Ok(cfg) = config_from_gguf(&g) else {
        return;
    };
    let mut layers = vec![LayerWeights::EMPTY; cfg.n_layer];
    let Ok(layout) = ModelLayout::from_gguf(&g, &mut layers) else {
        return;
    };
    let Ok(model) = Model::new(data, &layout, &layers) else {
        return;
    };
    black_box(model.fingerprint());
    if data.len() <= MAX_STEP_BYTES {
        drive_core(&model, &cfg);
    }
}

/// The loader every front end uses (`LoadedModel::from_gguf_bytes`), then a session.
/// Returns the model so the C ABI target can compare its verdict.
pub fn loaded_model(data: &[u8]) -> Option<LoadedModel> {
    let m = LoadedModel::from_gguf_bytes(data).ok()?;
    if data.len() <= MAX_STEP_BYTES {
        drive_session(&m);
    }
    Some(m)
}

/// fuzz_safetensors input layout: `[flags: u8][config_len: u16 LE][config.json]
/// [model.safetensors]` (a short input is all config). Bit 0 of flags converts to
/// Q8_0 instead of F32.
pub fn split_hf(data: &[u8]) -> (u8, &[u8], &[u8]) {
    let flags = data.first().copied().unwrap_or(0);
    let rest = data.get(1..).unwrap_or(&[]);
    let n = match rest {
        [a, b, ..] => u16::from_le_bytes([*a, *b]) as usize,
        _ => return (flags, &[], &[]),
    };
    let rest = &rest[2..];
    let n = n.min(rest.len());
    (flags, &rest[..n], &rest[n..])
}

/// Inverse of [`split_hf`], for making seeds.
pub fn join_hf(flags: u8, config: &[u8], st: &[u8]) -> Vec<u8> {
    let mut v = vec![flags];
    v.extend_from_slice(&(config.len() as u16).to_le_bytes());
    v.extend_from_slice(config);
    v.extend_from_slice(st);
    v
}

/// A private scratch folder for this process (fuzzers run one input at a time).
fn scratch_dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("mamba-fuzz-hf-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("create scratch dir");
        d
    })
}

/// fuzz_safetensors: config.json + model.safetensors in a folder, opened with
/// `HfCheckpoint::open`, converted to GGUF bytes, loaded and stepped.
pub fn safetensors(data: &[u8]) {
    let (flags, config, st) = split_hf(data);
    let dir = scratch_dir();
    std::fs::write(dir.join("config.json"), config).expect("write config.json");
    std::fs::write(dir.join("model.safetensors"), st).expect("write model.safetensors");
    let Ok(ck) = HfCheckpoint::open(dir) else {
        return;
    };
    let dtype = if flags & 1 == 1 {
        DType::Q8_0
    } else {
        DType::F32
    };
    let Ok(w) = ck.to_gguf(dtype) else { return };
    let bytes = w.to_bytes();
    // What the converter writes, the loader must accept.
    let m = LoadedModel::from_aligned(bytes)
        .unwrap_or_else(|e| panic!("converted checkpoint does not load: {e}"));
    if m.bytes().len() <= MAX_STEP_BYTES {
        drive_session(&m);
    }
}

/// The model blobs are imported into: a small random model, built once.
pub fn state_model() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| {
        let cfg = ModelConfig {
            d_model: 16,
            n_layer: 2,
            d_inner: 32,
            d_state: 4,
            d_conv: 3,
            dt_rank: 2,
            vocab_size: 32,
            eps: 1e-5,
            in_proj_bias: false,
            out_proj_bias: false,
            conv_bias: true,
            tied_head: true,
            dt_b_c_rms: false,
        };
        let w = mamba_rt::cpu::random_model::random_model(&cfg, DType::F32, 7);
        LoadedModel::from_aligned(w.to_bytes()).expect("state model loads")
    })
}

/// fuzz_state input: `[mode: u8][blob...]`. Mode bit 0 writes the model's real header
/// over the first 40 bytes, bit 1 pads or cuts the blob to the exact length: without
/// them almost every mutation stops at the magic or the fingerprint check, and the
/// value checks behind it would never be reached.
pub fn state_blob(data: &[u8]) -> Vec<u8> {
    let m = state_model();
    let mode = data.first().copied().unwrap_or(0);
    let mut blob = data.get(1..).unwrap_or(&[]).to_vec();
    let good = Session::new(m).save_state();
    if mode & 2 == 2 {
        blob.resize(good.len(), 0);
    }
    if mode & 1 == 1 {
        let h = mamba_core::state::STATE_HEADER_LEN.min(blob.len());
        blob[..h].copy_from_slice(&good[..h]);
    }
    blob
}

/// fuzz_state: import a blob through the core and through a session; on success the
/// state must export back to the same bytes and step without error.
pub fn state(data: &[u8]) {
    let m = state_model();
    let blob = state_blob(data);
    let cfg = m.config();
    let mut st = vec![1.0f32; cfg.state_len()];
    let core_ok = mamba_core::state::import(&m.view(), &blob, &mut st);
    let mut s = Session::new(m);
    let before = s.save_state();
    let rt_ok = s.load_state(&blob);
    assert_eq!(core_ok.is_ok(), rt_ok.is_ok());
    match rt_ok {
        Ok(()) => {
            // The header's reserved u32 (bytes 12..16) is not checked by import, and
            // export writes 0 there; everything else must come back as it went in.
            let mut want = blob.clone();
            want[12..16].fill(0);
            assert_eq!(s.save_state(), want, "an accepted blob must round-trip");
            let mut logits = vec![0.0f32; cfg.vocab_size];
            s.step_token(kernels(), 1, &mut logits)
                .expect("step after import");
        }
        Err(_) => {
            // On error the state is unchanged.
            assert_eq!(s.save_state(), before);
            assert!(st.iter().all(|&v| v == 1.0));
        }
    }
    // A short output buffer is an error, never a panic.
    let mut small = vec![0u8; blob.len().min(mamba_core::state::blob_len(cfg) - 1)];
    assert!(mamba_core::state::export(&m.view(), s.state(), &mut small).is_err());
}
