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

/// `mamba_sessions_step` with both outputs; asserts MAMBA_OK.
fn batch_step(ss: &[*mut mamba_session], toks: &[i32], v: usize) -> (Vec<f32>, Vec<i32>) {
    let mut l = vec![f32::NAN; ss.len() * v];
    let mut nx = vec![-1i32; ss.len()];
    // SAFETY: ss.len() live sessions and tokens, n x v floats, n ints.
    let st = unsafe {
        mamba_sessions_step(
            ss.as_ptr(),
            toks.as_ptr(),
            ss.len(),
            l.as_mut_ptr(),
            l.len(),
            nx.as_mut_ptr(),
        )
    };
    assert_eq!(st, MAMBA_OK, "{}", last_error());
    (l, nx)
}

fn argmax(l: &[f32]) -> i32 {
    (0..l.len()).fold(0, |b, j| if l[j] > l[b] { j } else { b }) as i32
}

/// Many sessions of one CUDA model (more than the decoder's first slots, so the
/// slots grow while states are live), prompts prefilled on the GPU, then 200
/// batched greedy steps (subsets in changing order, sessions joining late and
/// leaving early): every session's logits within 1e-4 of a CPU session fed the
/// same, the GPU's greedy picks equal the CPU logits' argmax, and the state blobs
/// at the end close to the CPU's.
#[test]
fn cuda_batched_step_matches_cpu_sessions() {
    let bytes = default_model_bytes();
    let Some(g) = load_cuda(&bytes) else { return };
    let c = load_bytes(&bytes, MAMBA_BACKEND_CPU).expect("CPU load");
    let v = vocab(g);
    const N: usize = 20;
    let gs: Vec<_> = (0..N).map(|_| session(g)).collect();
    let cs: Vec<_> = (0..N).map(|_| session(c)).collect();
    let mut next = [0i32; N];
    for i in 0..N {
        let p = tokens(3 + 7 * i, v, 40 + i as u64);
        let (lg, lc) = (prefill(gs[i], &p, v), prefill(cs[i], &p, v));
        assert_close(&format!("session {i}: prompt"), &lg, &lc);
        next[i] = argmax(&lc);
    }
    let mut worst = 0f64;
    for t in 0..200usize {
        // Session i steps at step t when it has joined (i < t / 4 + 6 or so) and
        // not left; every 3rd step the order is reversed, every 5th some skip.
        let mut who: Vec<usize> = (0..N)
            .filter(|&i| i < 6 + t / 8 && !(i % 7 == 3 && t > 150))
            .filter(|&i| (t + i) % 5 != 0 || i % 2 == 0)
            .collect();
        if t % 3 == 0 {
            who.reverse();
        }
        let ss: Vec<_> = who.iter().map(|&i| gs[i]).collect();
        let toks: Vec<i32> = who.iter().map(|&i| next[i]).collect();
        let (l, nx) = batch_step(&ss, &toks, v);
        for (r, &i) in who.iter().enumerate() {
            let lc = step(cs[i], next[i], v);
            let lg = &l[r * v..(r + 1) * v];
            let e = rel_l2(lg, &lc);
            worst = worst.max(e);
            assert!(e <= 1e-4, "step {t} session {i}: relative error {e:.3e}");
            assert_eq!(nx[r], argmax(&lc), "step {t} session {i}: greedy token");
            next[i] = nx[r];
        }
    }
    eprintln!("batched GPU steps vs CPU sessions: worst relative error {worst:.2e}");
    // The GPU-resident states, saved, continue in CPU sessions like the CPU's own.
    let probe = session(c);
    for i in 0..N {
        let blob = state(gs[i]);
        assert_eq!(blob.len(), state(cs[i]).len());
        // SAFETY: live session, blob.len() bytes.
        let st = unsafe { mamba_session_state_load(probe, blob.as_ptr().cast(), blob.len()) };
        assert_eq!(st, MAMBA_OK, "{}", last_error());
        assert_close(
            &format!("session {i}: saved state"),
            &step(probe, 10, v),
            &step(cs[i], 10, v),
        );
    }
    free(ptr::null_mut(), &[probe]);
    free(g, &gs);
    free(c, &cs);
}

/// A session's results do not depend on which other sessions share its batch
/// (alone = the GEMV path; with others = cuBLAS: rounding only), and 200 greedy
/// steps of the default model give the same tokens alone and in batches.
#[test]
fn cuda_batch_independence() {
    let bytes = default_model_bytes();
    let Some(g) = load_cuda(&bytes) else { return };
    let v = vocab(g);
    let alone = session(g);
    let x = session(g);
    let others: Vec<_> = (0..9).map(|_| session(g)).collect();
    let p = tokens(30, v, 7);
    let (la, lx) = (prefill(alone, &p, v), prefill(x, &p, v));
    assert!(rel_l2(&la, &lx) <= 1e-6);
    let (mut ta, mut tx) = (argmax(&la), argmax(&lx));
    let mut worst = 0f64;
    for t in 0..200usize {
        let (l1, n1) = batch_step(&[alone], &[ta], v);
        // x with a changing set of companions, at a changing position.
        let k = t % 10;
        let mut ss: Vec<_> = others[..k].to_vec();
        let mut toks: Vec<i32> = (0..k).map(|j| ((t * 13 + j * 31) % v) as i32).collect();
        let at = t % (k + 1);
        ss.insert(at, x);
        toks.insert(at, tx);
        let (l2, n2) = batch_step(&ss, &toks, v);
        let lx = &l2[at * v..(at + 1) * v];
        let e = rel_l2(lx, &l1);
        worst = worst.max(e);
        assert!(e <= 1e-5, "step {t} (batch of {}): {e:.3e}", k + 1);
        assert_eq!(n1[0], n2[at], "step {t}: greedy token depends on the batch");
        ta = n1[0];
        tx = n2[at];
    }
    eprintln!("batch independence: worst relative difference {worst:.2e}");
    free(g, &[alone, x]);
    free(ptr::null_mut(), &others);
}

/// GPU steps, then a GPU prompt (the state comes back to the host once and goes
/// back to the GPU at the next step), then steps again; single-session steps and
/// input vectors (single and batched) too: all against CPU sessions.
#[test]
fn cuda_prefill_steps_interleaved_and_embeddings() {
    let bytes = default_model_bytes();
    let Some(g) = load_cuda(&bytes) else { return };
    let c = load_bytes(&bytes, MAMBA_BACKEND_CPU).expect("CPU load");
    let v = vocab(g);
    // SAFETY: live model.
    let d = unsafe { mamba_model_d_model(g) } as usize;
    let (g1, g2, c1, c2) = (session(g), session(g), session(c), session(c));
    for round in 0..3u64 {
        let p = tokens(10 + 50 * round as usize, v, round);
        for (gs, cs) in [(g1, c1), (g2, c2)] {
            let (a, b) = (prefill(gs, &p, v), prefill(cs, &p, v));
            assert_close(&format!("round {round}: prompt"), &a, &b);
        }
        for t in tokens(8, v, 50 + round) {
            let (l, _) = batch_step(&[g2, g1], &[t, t], v);
            assert_close("batched", &l[v..], &step(c1, t, v));
            assert_close("batched", &l[..v], &step(c2, t, v));
            assert_close("single GPU step", &step(g1, t, v), &step(c1, t, v));
        }
        // Input vectors: single and batched, hidden states against the CPU's.
        let xs: Vec<f32> = (0..2 * d)
            .map(|i| ((i * 7919 + round as usize) % 101) as f32 / 101.0 - 0.5)
            .collect();
        let mut h = vec![f32::NAN; 2 * d];
        // SAFETY: 2 live sessions, 2 x d floats in and out.
        let st = unsafe {
            mamba_sessions_step_embedding(
                [g1, g2].as_ptr(),
                2,
                xs.as_ptr(),
                xs.len(),
                h.as_mut_ptr(),
                h.len(),
            )
        };
        assert_eq!(st, MAMBA_OK, "{}", last_error());
        for (i, cs) in [c1, c2].into_iter().enumerate() {
            let mut want = vec![0f32; d];
            // SAFETY: live session, d floats in and out.
            let st = unsafe {
                mamba_session_step_embedding(cs, xs[i * d..].as_ptr(), d, want.as_mut_ptr(), d)
            };
            assert_eq!(st, MAMBA_OK);
            assert_close("batched input vectors", &h[i * d..(i + 1) * d], &want);
        }
        let mut hg = vec![f32::NAN; d];
        let mut hc = vec![f32::NAN; d];
        // SAFETY: live sessions, d floats in and out.
        unsafe {
            assert_eq!(
                mamba_session_step_embedding(g1, xs.as_ptr(), d, hg.as_mut_ptr(), d),
                MAMBA_OK
            );
            assert_eq!(
                mamba_session_step_embedding(c1, xs.as_ptr(), d, hc.as_mut_ptr(), d),
                MAMBA_OK
            );
        }
        assert_close("single input vector", &hg, &hc);
    }
    free(g, &[g1, g2]);
    free(c, &[c1, c2]);
}

/// Save/load of a CUDA session whose state is on the GPU: the blob loads into a
/// CPU session and another CUDA session, and both continue like the saved one;
/// loading an older blob back into the stepped session rewinds it; reset too.
#[test]
fn cuda_state_roundtrip() {
    let bytes = default_model_bytes();
    let Some(g) = load_cuda(&bytes) else { return };
    let c = load_bytes(&bytes, MAMBA_BACKEND_CPU).expect("CPU load");
    let v = vocab(g);
    let (a, b, cs) = (session(g), session(g), session(c));
    prefill(a, &tokens(40, v, 1), v);
    for t in tokens(25, v, 2) {
        batch_step(&[a], &[t], v);
    }
    let blob = state(a); // from the GPU slot
    let load = |s: *mut mamba_session, blob: &[u8]| {
        // SAFETY: live session, blob.len() bytes.
        let st = unsafe { mamba_session_state_load(s, blob.as_ptr().cast(), blob.len()) };
        assert_eq!(st, MAMBA_OK, "{}", last_error());
    };
    load(b, &blob);
    load(cs, &blob);
    let cont = tokens(30, v, 3);
    let mut la = Vec::new();
    for &t in &cont {
        let (l, _) = batch_step(&[b, a], &[t, t], v);
        let lc = step(cs, t, v);
        assert_close("loaded CUDA session", &l[..v], &lc);
        assert_eq!(
            &l[..v],
            &l[v..],
            "the same state in a batch, different logits"
        );
        la.push(l[v..].to_vec());
    }
    // Rewind a to the blob: the same continuation again.
    load(a, &blob);
    for (i, &t) in cont.iter().enumerate() {
        let (l, _) = batch_step(&[a], &[t], v);
        let e = rel_l2(&l, &la[i]);
        assert!(e <= 1e-5, "rewound session, step {i}: {e:.3e}");
    }
    // A bad blob changes nothing (the state stays the GPU's).
    let before = state(a);
    // SAFETY: live session, a short readable buffer.
    let st = unsafe { mamba_session_state_load(a, blob.as_ptr().cast(), 7) };
    assert_ne!(st, MAMBA_OK);
    assert_eq!(state(a), before);
    // Reset: a fresh stream, on the GPU too.
    // SAFETY: live sessions.
    unsafe {
        assert_eq!(mamba_session_reset(a), MAMBA_OK);
        assert_eq!(mamba_session_reset(cs), MAMBA_OK);
    }
    assert_close(
        "after reset",
        &batch_step(&[a], &[65], v).0,
        &step(cs, 65, v),
    );
    free(g, &[a, b]);
    free(c, &[cs]);
}

/// Bad batches of a CUDA model: mixed models (two CUDA models; a CPU session in
/// a CUDA batch), duplicates, NULLs, bad tokens; nothing written or stepped.
/// Sessions freed give their slots back (many create/step/free rounds).
#[test]
fn cuda_batched_step_errors_and_slot_reuse() {
    let bytes = default_model_bytes();
    let Some(g) = load_cuda(&bytes) else { return };
    let Some(g2) = load_cuda(&bytes) else { return };
    let c = load_bytes(&bytes, MAMBA_BACKEND_CPU).expect("CPU load");
    let v = vocab(g);
    let (a, b, o, cs, probe) = (session(g), session(g), session(g2), session(c), session(g));
    let fresh = step(probe, 3, v);
    let mut l = vec![f32::NAN; 2 * v];
    let mut nx = [-7i32; 2];
    let toks = [1i32, 2];
    let check = |st: mamba_status, want: mamba_status, msg: &str| {
        assert_eq!(st, want, "{}", last_error());
        let e = last_error();
        assert!(e.contains(msg), "{e} lacks {msg:?}");
    };
    // SAFETY: every pointer NULL or valid for the lengths given.
    unsafe {
        let run = |ss: &[*mut mamba_session], t: &[i32], l: &mut [f32], nx: &mut [i32]| {
            mamba_sessions_step(
                ss.as_ptr(),
                t.as_ptr(),
                ss.len(),
                l.as_mut_ptr(),
                l.len(),
                nx.as_mut_ptr(),
            )
        };
        check(
            run(&[a, o], &toks, &mut l, &mut nx),
            MAMBA_ERR_INVALID_ARG,
            "another model",
        );
        check(
            run(&[a, cs], &toks, &mut l, &mut nx),
            MAMBA_ERR_INVALID_ARG,
            "another model",
        );
        check(
            run(&[cs, a], &toks, &mut l, &mut nx),
            MAMBA_ERR_INVALID_ARG,
            "another model",
        );
        check(
            run(&[a, a], &toks, &mut l, &mut nx),
            MAMBA_ERR_INVALID_ARG,
            "same session",
        );
        check(
            run(&[a, ptr::null_mut()], &toks, &mut l, &mut nx),
            MAMBA_ERR_INVALID_ARG,
            "sessions[1] is NULL",
        );
        check(
            run(&[a, b], &[0, v as i32], &mut l, &mut nx),
            MAMBA_ERR_TOKEN_OUT_OF_RANGE,
            "tokens[1]",
        );
        let st = mamba_sessions_step(
            ptr::null(),
            toks.as_ptr(),
            2,
            l.as_mut_ptr(),
            l.len(),
            nx.as_mut_ptr(),
        );
        check(st, MAMBA_ERR_INVALID_ARG, "sessions is NULL");
        let ss = [a, b];
        let st = mamba_sessions_step(
            ss.as_ptr(),
            ptr::null(),
            2,
            l.as_mut_ptr(),
            l.len(),
            nx.as_mut_ptr(),
        );
        check(st, MAMBA_ERR_INVALID_ARG, "tokens is NULL");
        let st = mamba_sessions_step(
            ss.as_ptr(),
            toks.as_ptr(),
            2,
            l.as_mut_ptr(),
            v,
            nx.as_mut_ptr(),
        );
        check(st, MAMBA_ERR_BUFFER_TOO_SMALL, "logits holds");
    }
    assert!(l.iter().all(|x| x.is_nan()), "logits written on failure");
    assert_eq!(nx, [-7, -7], "next_tokens written on failure");
    assert_eq!(step(a, 3, v), fresh);
    assert_eq!(step(b, 3, v), fresh);
    // Slots come back: 30 rounds of 12 sessions made, stepped together, freed.
    for round in 0..30 {
        let ss: Vec<_> = (0..12).map(|_| session(g)).collect();
        let toks = vec![3i32; 12];
        let (l, _) = batch_step(&ss, &toks, v);
        let e = rel_l2(&l[11 * v..], &fresh);
        assert!(
            e <= 1e-5,
            "round {round}: a fresh session's step differs ({e:.3e})"
        );
        free(ptr::null_mut(), &ss);
    }
    free(g, &[a, b, probe]);
    free(g2, &[o]);
    free(c, &[cs]);
}
