//! `MAMBA_BACKEND_CUDA` through the C API, called as C would call it.
//!
//! Without a usable GPU, loading with the CUDA backend must fail with
//! `MAMBA_ERR_NO_DEVICE` and a message (that test runs everywhere); the GPU tests
//! then skip with a message, or fail when `MAMBA_REQUIRE_GPU=1`.
//!
//! On the GPU machine (no Rust toolchain there): build here with
//! `cargo test --release -p mamba-ffi --test cuda_backend --no-run` (or
//! mamba-cuda/tools/stage_device.sh), run there from the repository root with
//! `MAMBA_REQUIRE_GPU=1 .device/cuda_backend`. The shipped models are looked up in
//! `$MAMBA_MODELS_DIR`, then `models/` beside this crate, then `./models`.
#![cfg(feature = "cuda")]

#[allow(dead_code)]
#[path = "../src/test_model.rs"]
mod test_model;

use mamba::*;
use std::ffi::{CStr, c_void};
use std::path::PathBuf;
use std::ptr;
use test_model::{TestModelSpec, gguf_bytes};

fn last_error() -> String {
    // SAFETY: mamba_last_error returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(mamba_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn gpu_required() -> bool {
    std::env::var("MAMBA_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

fn params(backend: mamba_backend) -> mamba_model_params {
    let mut p = mamba_model_default_params();
    p.backend = backend;
    p
}

/// Loads `bytes` with `backend`; `Err((status, message))` on failure.
fn load_bytes(bytes: &[u8], backend: mamba_backend) -> Result<*mut mamba_model, (i32, String)> {
    let p = params(backend);
    let mut m = ptr::null_mut();
    // SAFETY: valid bytes and params, writable out.
    let st = unsafe { mamba_model_load_memory(bytes.as_ptr().cast(), bytes.len(), &p, &mut m) };
    if st == MAMBA_OK {
        assert!(!m.is_null());
        Ok(m)
    } else {
        assert!(m.is_null(), "out written on failure");
        Err((st, last_error()))
    }
}

/// The model loaded with `MAMBA_BACKEND_CUDA`, or `None` after printing why the
/// test skips (no usable GPU). Panics on any other failure, and on a missing GPU
/// when `MAMBA_REQUIRE_GPU=1`.
fn load_cuda(bytes: &[u8]) -> Option<*mut mamba_model> {
    match load_bytes(bytes, MAMBA_BACKEND_CUDA) {
        Ok(m) => Some(m),
        Err((MAMBA_ERR_NO_DEVICE, msg)) => {
            assert!(!gpu_required(), "MAMBA_REQUIRE_GPU=1 but: {msg}");
            eprintln!("skipping: {msg}");
            None
        }
        Err((st, msg)) => panic!("CUDA load failed with {st}: {msg}"),
    }
}

fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MAMBA_MODELS_DIR") {
        return PathBuf::from(d);
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
    if here.join("default-f32.gguf").is_file() {
        return here;
    }
    PathBuf::from("models")
}

fn default_model_bytes() -> Vec<u8> {
    let p = models_dir().join("default-f32.gguf");
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn session(m: *mut mamba_model) -> *mut mamba_session {
    let mut s = ptr::null_mut();
    // SAFETY: live model, writable out.
    assert_eq!(unsafe { mamba_session_init(m, &mut s) }, MAMBA_OK);
    s
}

fn vocab(m: *mut mamba_model) -> usize {
    // SAFETY: live model.
    unsafe { mamba_model_vocab_size(m) as usize }
}

fn prefill(s: *mut mamba_session, toks: &[i32], v: usize) -> Vec<f32> {
    let mut l = vec![f32::NAN; v];
    // SAFETY: live session, toks.len() ids, v floats.
    let st = unsafe { mamba_session_prefill(s, toks.as_ptr(), toks.len(), l.as_mut_ptr(), v) };
    assert_eq!(st, MAMBA_OK, "{}", last_error());
    l
}

fn step(s: *mut mamba_session, t: i32, v: usize) -> Vec<f32> {
    let mut l = vec![f32::NAN; v];
    // SAFETY: live session, v floats.
    let st = unsafe { mamba_session_step_token(s, t, l.as_mut_ptr(), v) };
    assert_eq!(st, MAMBA_OK, "{}", last_error());
    l
}

fn state(s: *mut mamba_session) -> Vec<u8> {
    // SAFETY: live session; the buffer holds state_size bytes.
    unsafe {
        let n = mamba_session_state_size(s);
        let mut b = vec![0u8; n];
        let mut w = 0usize;
        let st = mamba_session_state_save(s, b.as_mut_ptr().cast(), n, &mut w);
        assert_eq!(st, MAMBA_OK, "{}", last_error());
        assert_eq!(w, n);
        b
    }
}

/// ||a - b|| / ||b||.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        assert!(x.is_finite(), "non-finite GPU value {x}");
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

fn assert_close(what: &str, gpu: &[f32], cpu: &[f32]) {
    let e = rel_l2(gpu, cpu);
    eprintln!("{what}: relative error {e:.2e}");
    assert!(e <= 1e-4, "{what}: relative error {e:.3e} > 1e-4");
}

/// Deterministic token ids below `v`.
fn tokens(n: usize, v: usize, salt: u64) -> Vec<i32> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ salt.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % v as u64) as i32
        })
        .collect()
}

fn free(m: *mut mamba_model, ss: &[*mut mamba_session]) {
    // SAFETY: live handles, freed once.
    unsafe {
        for &s in ss {
            mamba_session_free(s);
        }
        mamba_model_free(m);
    }
}

/// Runs everywhere: without a GPU (this crate's CI machines) the CUDA backend
/// must fail cleanly, never panic, and leave `out` alone; with one, a device
/// ordinal past the last GPU must.
#[test]
fn cuda_load_without_device_fails_cleanly() {
    let bytes = gguf_bytes(&TestModelSpec::default());
    let gpu_here = mamba_cuda::GpuContext::is_available().is_ok();
    let mut p = params(MAMBA_BACKEND_CUDA);
    if gpu_here {
        eprintln!("a GPU is present: checking a device ordinal past the last one instead");
        p.gpu_device = 4095;
    }
    let path = models_dir().join("default-f32.gguf");
    let cpath = std::ffi::CString::new(path.to_string_lossy().as_bytes()).unwrap();
    let mut m = ptr::null_mut();
    for from_file in [false, true] {
        // SAFETY: valid bytes / path and params, writable out.
        let st = unsafe {
            if from_file {
                mamba_model_load_file(cpath.as_ptr(), &p, &mut m)
            } else {
                mamba_model_load_memory(bytes.as_ptr().cast(), bytes.len(), &p, &mut m)
            }
        };
        let msg = last_error();
        eprintln!("{msg}");
        assert_eq!(st, MAMBA_ERR_NO_DEVICE, "{msg}");
        assert!(m.is_null(), "out written on failure");
        assert!(msg.contains("MAMBA_BACKEND_CUDA"), "{msg}");
        if !gpu_here {
            assert!(msg.contains("no GPU"), "{msg}");
        }
    }
    // SAFETY: a static string.
    let name = unsafe { CStr::from_ptr(mamba_status_str(MAMBA_ERR_NO_DEVICE)) };
    assert_eq!(name.to_str().unwrap(), "no usable GPU");
    // The CPU backend still loads and runs in the same process afterwards.
    let m = load_bytes(&bytes, MAMBA_BACKEND_CPU).expect("CPU load");
    let s = session(m);
    let l = prefill(s, &[1, 2, 3], 256);
    assert!(l.iter().all(|x| x.is_finite()));
    free(m, &[s]);
}

/// Logits after a GPU prompt against the CPU backend's, on random models of a few
/// shapes and on the shipped default model, for prompts from 1 token to past the
/// GPU chunk; then the state (saved blob) and CPU steps continuing from it.
#[test]
fn cuda_prefill_matches_cpu() {
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        (
            "random d64 N8 K4".into(),
            gguf_bytes(&TestModelSpec::default()),
        ),
        (
            "random d48 N16 K3 x3 layers".into(),
            gguf_bytes(&TestModelSpec {
                d_model: 48,
                n_layer: 3,
                d_state: 16,
                d_conv: 3,
                seed: 5,
                ..TestModelSpec::default()
            }),
        ),
    ];
    cases.push(("models/default-f32.gguf".into(), default_model_bytes()));
    for (name, bytes) in &cases {
        let Some(g) = load_cuda(bytes) else { return };
        let c = load_bytes(bytes, MAMBA_BACKEND_CPU).expect("CPU load");
        let v = vocab(c);
        for (i, &n) in [1usize, 2, 7, 64, 333, 9000].iter().enumerate() {
            let toks = tokens(n, v, i as u64);
            let (gs, cs) = (session(g), session(c));
            let lg = prefill(gs, &toks, v);
            let lc = prefill(cs, &toks, v);
            assert_close(&format!("{name}: prompt of {n}"), &lg, &lc);
            // The state came back to the host: a second prompt (GPU, state in) and
            // CPU steps continue it.
            let more = tokens(5, v, 100 + i as u64);
            let lg = prefill(gs, &more, v);
            let lc = prefill(cs, &more, v);
            assert_close(&format!("{name}: prompt of {n} + 5"), &lg, &lc);
            for &t in &more[..3] {
                let (a, b) = (step(gs, t, v), step(cs, t, v));
                assert_close(&format!("{name}: prompt of {n} + 5, step"), &a, &b);
            }
            // Same blob format; the values close to the CPU's.
            let (bg, bc) = (state(gs), state(cs));
            assert_eq!(bg.len(), bc.len());
            free(ptr::null_mut(), &[gs, cs]);
        }
        free(g, &[]);
        free(c, &[]);
    }
}

unsafe extern "C" fn collect(user: *mut c_void, token: i32) -> i32 {
    // SAFETY: the test passes a live Vec<i32> as user data.
    let v = unsafe { &mut *user.cast::<Vec<i32>>() };
    v.push(token);
    0
}

fn generate(
    s: *mut mamba_session,
    prompt: &[i32],
    p: &mamba_sampling_params,
    n: usize,
) -> Vec<i32> {
    let mut out: Vec<i32> = Vec::new();
    // SAFETY: live session, prompt.len() ids, valid params, callback with its user data.
    let st = unsafe {
        mamba_session_generate(
            s,
            prompt.as_ptr(),
            prompt.len(),
            p,
            n,
            Some(collect),
            (&mut out as *mut Vec<i32>).cast(),
        )
    };
    assert_eq!(st, MAMBA_OK, "{}", last_error());
    out
}

/// Greedy generation after a GPU prompt equals the CPU backend's, on the shipped
/// default model; the sessions' states stay interchangeable afterwards.
#[test]
fn cuda_generate_matches_cpu_greedy() {
    let bytes = default_model_bytes();
    let Some(g) = load_cuda(&bytes) else { return };
    let c = load_bytes(&bytes, MAMBA_BACKEND_CPU).expect("CPU load");
    let mut p = mamba_sampling_default_params();
    p.temperature = 0.0;
    for prompt in ["The Rust programming language", "fn main() {\n    let x = "] {
        let ids: Vec<i32> = prompt.bytes().map(i32::from).collect();
        let (gs, cs) = (session(g), session(c));
        let a = generate(gs, &ids, &p, 96);
        let b = generate(cs, &ids, &p, 96);
        let text: String = a.iter().map(|&t| t as u8 as char).collect();
        eprintln!("{prompt:?} -> {text:?}");
        assert_eq!(a, b, "greedy tokens differ after a GPU prompt");
        // Continue both with a second prompt: the GPU one starts from the state the
        // CPU steps left.
        let a = generate(gs, &ids[..4], &p, 32);
        let b = generate(cs, &ids[..4], &p, 32);
        assert_eq!(a, b, "greedy tokens differ on the continued stream");
        free(ptr::null_mut(), &[gs, cs]);
    }
    free(g, &[]);
    free(c, &[]);
}

/// Sessions of one CUDA model prefilling from several threads at once get what
/// they get one at a time (the GPU is serialized per model).
#[test]
fn cuda_sessions_on_threads() {
    let bytes = gguf_bytes(&TestModelSpec::default());
    let Some(g) = load_cuda(&bytes) else { return };
    struct Model(*mut mamba_model);
    // SAFETY: the C API lets any number of threads use one model.
    unsafe impl Send for Model {}
    // SAFETY: as above.
    unsafe impl Sync for Model {}
    let model = Model(g);
    let v = vocab(g);
    let serial: Vec<Vec<f32>> = (0..6)
        .map(|i| {
            let s = session(g);
            let l = prefill(s, &tokens(50 + 40 * i, v, i as u64), v);
            free(ptr::null_mut(), &[s]);
            l
        })
        .collect();
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let model = &model;
                sc.spawn(move || {
                    let s = session(model.0);
                    let mut last = Vec::new();
                    for _ in 0..4 {
                        // SAFETY: live session.
                        assert_eq!(unsafe { mamba_session_reset(s) }, MAMBA_OK);
                        last = prefill(s, &tokens(50 + 40 * i, v, i as u64), v);
                    }
                    free(ptr::null_mut(), &[s]);
                    last
                })
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            let l = h.join().expect("thread");
            // Races would show as large errors; allow only reduction-order noise.
            let e = rel_l2(&l, &serial[i]);
            assert!(
                e <= 1e-6,
                "thread {i}: relative error {e:.3e} against the serial run"
            );
        }
    });
    free(g, &[]);
}
