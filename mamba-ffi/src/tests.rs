//! Rust-side tests of the exports, called as C would call them.

use crate::boundary::{guard, guard_value};
use crate::test_model::{TestModelSpec, gguf_bytes};
use crate::*;
use std::ffi::{CStr, c_void};
use std::ptr;

fn last_error() -> String {
    // SAFETY: mamba_last_error returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(mamba_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn load(spec: &TestModelSpec) -> *mut mamba_model {
    let bytes = gguf_bytes(spec);
    let mut m = ptr::null_mut();
    // SAFETY: valid bytes, NULL params, writable out.
    let st =
        unsafe { mamba_model_load_memory(bytes.as_ptr().cast(), bytes.len(), ptr::null(), &mut m) };
    assert_eq!(st, MAMBA_OK, "{}", last_error());
    assert!(!m.is_null());
    m
}

fn session(m: *mut mamba_model) -> *mut mamba_session {
    let mut s = ptr::null_mut();
    // SAFETY: live model, writable out.
    assert_eq!(unsafe { mamba_session_init(m, &mut s) }, MAMBA_OK);
    s
}

fn step(s: *mut mamba_session, t: i32, v: usize) -> Vec<f32> {
    let mut l = vec![0.0; v];
    // SAFETY: live session, buffer of v floats.
    let st = unsafe { mamba_session_step_token(s, t, l.as_mut_ptr(), l.len()) };
    assert_eq!(st, MAMBA_OK, "{}", last_error());
    l
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "[{i}]: {x} vs {y}");
    }
}

#[test]
fn shape_queries_and_version() {
    let m = load(&TestModelSpec::default());
    // SAFETY: live model.
    unsafe {
        assert_eq!(mamba_model_vocab_size(m), 256);
        assert_eq!(mamba_model_d_model(m), 64);
        assert_eq!(mamba_model_n_layer(m), 2);
        assert_eq!(mamba_model_d_inner(m), 128);
        assert_eq!(mamba_model_d_state(m), 8);
        assert_eq!(mamba_model_is_byte_level(m), 1);
        assert_eq!(mamba_model_vocab_size(ptr::null()), 0);
        mamba_model_free(m);
    }
    assert!(last_error().contains("model is NULL"));
    // SAFETY: static strings.
    let v = unsafe { CStr::from_ptr(mamba_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    // SAFETY: static strings.
    let s = unsafe { CStr::from_ptr(mamba_status_str(MAMBA_ERR_STATE_MISMATCH)) };
    assert_eq!(s.to_str().unwrap(), "state belongs to another model");
    // SAFETY: static strings.
    let s = unsafe { CStr::from_ptr(mamba_status_str(-1000)) };
    assert_eq!(s.to_str().unwrap(), "unknown status");
}

#[test]
fn panics_become_status_and_message() {
    let st = guard("test_fn", || panic!("boom"));
    assert_eq!(st, MAMBA_ERR_PANIC);
    assert_eq!(last_error(), "test_fn: internal panic: boom");
    let v: usize = guard_value("test_fn2", 7, || panic!("bang {}", 1));
    assert_eq!(v, 7);
    assert_eq!(last_error(), "test_fn2: internal panic: bang 1");
}

#[test]
fn null_and_bad_arguments() {
    let m = load(&TestModelSpec::default());
    let s = session(m);
    let mut out: *mut mamba_model = ptr::null_mut();
    let mut l = vec![0.0f32; 256];
    // SAFETY: every pointer is NULL or valid; the library must reject the NULLs.
    unsafe {
        assert_eq!(
            mamba_model_load_file(ptr::null(), ptr::null(), &mut out),
            MAMBA_ERR_INVALID_ARG
        );
        assert_eq!(last_error(), "mamba_model_load_file: path is NULL");
        assert!(out.is_null());
        assert_eq!(
            mamba_model_load_file(c"/nonexistent.gguf".as_ptr(), ptr::null(), &mut out),
            MAMBA_ERR_IO
        );
        assert!(last_error().contains("/nonexistent.gguf"));
        assert!(out.is_null());
        assert_eq!(
            mamba_model_load_memory(b"GGUF".as_ptr().cast(), 4, ptr::null(), &mut out),
            MAMBA_ERR_FORMAT
        );
        assert!(out.is_null());
        assert_eq!(
            mamba_model_load_memory(b"nope".as_ptr().cast(), 4, ptr::null(), &mut out),
            MAMBA_ERR_FORMAT
        );
        assert!(last_error().contains("magic"), "{}", last_error());
        assert_eq!(
            mamba_session_init(ptr::null(), &mut ptr::null_mut()),
            MAMBA_ERR_INVALID_ARG
        );
        assert_eq!(
            mamba_session_init(m, ptr::null_mut()),
            MAMBA_ERR_INVALID_ARG
        );
        assert_eq!(last_error(), "mamba_session_init: out is NULL");
        assert_eq!(
            mamba_session_step_token(ptr::null_mut(), 1, l.as_mut_ptr(), 256),
            MAMBA_ERR_INVALID_ARG
        );
        assert_eq!(last_error(), "mamba_session_step_token: session is NULL");
        assert_eq!(
            mamba_session_step_token(s, 1, ptr::null_mut(), 256),
            MAMBA_ERR_INVALID_ARG
        );
        assert_eq!(
            mamba_session_step_token(s, 1, l.as_mut_ptr(), 255),
            MAMBA_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(
            last_error(),
            "mamba_session_step_token: logits holds 255 floats, needs 256"
        );
        assert_eq!(
            mamba_session_step_token(s, 256, l.as_mut_ptr(), 256),
            MAMBA_ERR_TOKEN_OUT_OF_RANGE
        );
        assert_eq!(
            last_error(),
            "mamba_session_step_token: token id 256 out of range (vocabulary 256)"
        );
        assert_eq!(
            mamba_session_step_token(s, -1, l.as_mut_ptr(), 256),
            MAMBA_ERR_TOKEN_OUT_OF_RANGE
        );
        let toks = [1, 2, 999];
        assert_eq!(
            mamba_session_prefill(s, toks.as_ptr(), 3, l.as_mut_ptr(), 256),
            MAMBA_ERR_TOKEN_OUT_OF_RANGE
        );
        assert!(last_error().contains("tokens[2]"), "{}", last_error());
        assert_eq!(
            mamba_session_prefill(s, toks.as_ptr(), 0, l.as_mut_ptr(), 256),
            MAMBA_ERR_INVALID_ARG
        );
        let x = [0.0f32; 63];
        assert_eq!(
            mamba_session_step_embedding(s, x.as_ptr(), 63, l.as_mut_ptr(), 64),
            MAMBA_ERR_INVALID_ARG
        );
        assert_eq!(
            last_error(),
            "mamba_session_step_embedding: x_len is 63, must be d_model = 64"
        );
        let mut p = mamba_model_default_params();
        p.backend = MAMBA_BACKEND_CUDA;
        let path = c"/nonexistent.gguf";
        let st = mamba_model_load_file(path.as_ptr(), &p, &mut out);
        // Without CUDA support: UNSUPPORTED; with it, the GPU is opened before the
        // file is read: NO_DEVICE here, IO (the missing file) on a GPU machine.
        #[cfg(not(feature = "cuda"))]
        let want = MAMBA_ERR_UNSUPPORTED;
        #[cfg(feature = "cuda")]
        let want = if mamba_cuda::GpuContext::is_available().is_ok() {
            MAMBA_ERR_IO
        } else {
            MAMBA_ERR_NO_DEVICE
        };
        assert_eq!(st, want, "{}", last_error());
        assert!(out.is_null());
        p.backend = 7;
        assert_eq!(
            mamba_model_load_file(path.as_ptr(), &p, &mut out),
            MAMBA_ERR_INVALID_ARG
        );
        p = mamba_model_default_params();
        p.struct_size = 0;
        assert_eq!(
            mamba_model_load_file(path.as_ptr(), &p, &mut out),
            MAMBA_ERR_INVALID_ARG
        );
        assert!(last_error().contains("struct_size"));
        assert_eq!(mamba_session_state_size(ptr::null()), 0);
        // The failures above left the state at zero: same logits as a fresh session.
        let fresh = session(m);
        assert_eq!(step(s, 5, 256), step(fresh, 5, 256));
        mamba_session_free(fresh);
        mamba_session_free(ptr::null_mut());
        mamba_model_free(ptr::null_mut());
        mamba_session_free(s);
        mamba_model_free(m);
    }
}

#[test]
fn prefill_equals_steps_and_model_outlives_free() {
    let m = load(&TestModelSpec::default());
    let a = session(m);
    let b = session(m);
    // The sessions keep the model alive.
    // SAFETY: releases the caller's reference only.
    unsafe { mamba_model_free(m) };
    let toks: Vec<i32> = b"hello mamba".iter().map(|&b| b as i32).collect();
    let mut last = vec![0.0f32; 300];
    // SAFETY: live session, valid buffers (a longer logits buffer is fine).
    let st = unsafe { mamba_session_prefill(a, toks.as_ptr(), toks.len(), last.as_mut_ptr(), 300) };
    assert_eq!(st, MAMBA_OK);
    let mut l = Vec::new();
    for &t in &toks {
        l = step(b, t, 256);
    }
    // Chunked prefill: the same as the steps up to float rounding.
    assert_close(&last[..256], &l);
    assert!(l.iter().all(|v| v.is_finite()));
    // SAFETY: live sessions, freed once.
    unsafe {
        mamba_session_free(a);
        mamba_session_free(b);
    }
}

#[test]
fn state_roundtrip_and_mismatch() {
    let m = load(&TestModelSpec::default());
    let other = load(&TestModelSpec {
        seed: 2,
        ..Default::default()
    });
    let s = session(m);
    for t in b"abc" {
        step(s, *t as i32, 256);
    }
    // SAFETY: live sessions and buffers of the stated sizes throughout.
    unsafe {
        let n = mamba_session_state_size(s);
        assert!(n > 40);
        let mut blob = vec![0u8; n];
        let mut written = 0usize;
        assert_eq!(
            mamba_session_state_save(s, blob.as_mut_ptr().cast(), n - 1, &mut written),
            MAMBA_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(written, 0);
        assert_eq!(
            mamba_session_state_save(s, blob.as_mut_ptr().cast(), n, &mut written),
            MAMBA_OK
        );
        assert_eq!(written, n);
        let after: Vec<Vec<f32>> = b"defg".iter().map(|&t| step(s, t as i32, 256)).collect();
        let r = session(m);
        assert_eq!(
            mamba_session_state_load(r, blob.as_ptr().cast(), n),
            MAMBA_OK
        );
        let again: Vec<Vec<f32>> = b"defg".iter().map(|&t| step(r, t as i32, 256)).collect();
        assert_eq!(after, again);
        let o = session(other);
        assert_eq!(
            mamba_session_state_load(o, blob.as_ptr().cast(), n),
            MAMBA_ERR_STATE_MISMATCH
        );
        assert!(last_error().contains("another model"), "{}", last_error());
        assert_eq!(
            mamba_session_state_load(r, blob.as_ptr().cast(), n - 4),
            MAMBA_ERR_BAD_STATE
        );
        blob[0] ^= 1;
        assert_eq!(
            mamba_session_state_load(r, blob.as_ptr().cast(), n),
            MAMBA_ERR_BAD_STATE
        );
        assert!(last_error().contains("magic"));
        assert_eq!(
            mamba_session_state_load(r, ptr::null(), n),
            MAMBA_ERR_INVALID_ARG
        );
        for p in [s, r, o] {
            mamba_session_free(p);
        }
        mamba_model_free(m);
        mamba_model_free(other);
    }
}

unsafe extern "C" fn collect(user: *mut c_void, token: i32) -> i32 {
    // SAFETY: the tests pass a &mut Vec<i32> as user data.
    let v = unsafe { &mut *user.cast::<Vec<i32>>() };
    v.push(token);
    i32::from(v.len() >= 5 && v[0] == -1)
}

fn run_gen(
    m: *mut mamba_model,
    prompt: &[i32],
    p: &mamba_sampling_params,
    max: usize,
) -> (i32, Vec<i32>) {
    let s = session(m);
    let mut out: Vec<i32> = Vec::new();
    // SAFETY: live session, valid prompt, callback matching its user data.
    let st = unsafe {
        mamba_session_generate(
            s,
            prompt.as_ptr(),
            prompt.len(),
            p,
            max,
            Some(collect),
            (&mut out as *mut Vec<i32>).cast(),
        )
    };
    // SAFETY: freed once.
    unsafe { mamba_session_free(s) };
    (st, out)
}

#[test]
fn generate_is_seeded_and_matches_the_cli_loop() {
    let m = load(&TestModelSpec::default());
    let prompt: Vec<i32> = b"The ".iter().map(|&b| b as i32).collect();
    let mut p = mamba_sampling_default_params();
    p.temperature = 1.0;
    let (st, a) = run_gen(m, &prompt, &p, 24);
    assert_eq!(st, MAMBA_OK, "{}", last_error());
    assert_eq!(a.len(), 24);
    assert_eq!(run_gen(m, &prompt, &p, 24).1, a);
    p.seed = 43;
    assert_ne!(run_gen(m, &prompt, &p, 24).1, a);
    p.seed = 42;

    // The CLI's loop, written out with the core sampler.
    let s = session(m);
    let mut sampler = mamba_core::Sampler::new(p.to_core().unwrap()).unwrap();
    let mut logits = vec![0.0f32; 256];
    let mut work = vec![0u32; 256];
    // The CLI feeds the prompt one step at a time (mamba_rt::generate).
    for &t in &prompt {
        logits = step(s, t, 256);
    }
    let mut history: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
    let mut cli = Vec::new();
    for _ in 0..24 {
        let t = sampler.sample(&mut logits, &history, &mut work).unwrap();
        cli.push(t as i32);
        history.push(t);
        logits = step(s, t as i32, 256);
    }
    assert_eq!(cli, a);
    // SAFETY: freed once.
    unsafe { mamba_session_free(s) };

    // Bad params and a NULL callback.
    p.top_p = 0.0;
    assert_eq!(run_gen(m, &prompt, &p, 4).0, MAMBA_ERR_INVALID_ARG);
    assert!(last_error().contains("top_p"));
    let s = session(m);
    // SAFETY: live session; the NULL callback must be rejected.
    let st = unsafe {
        mamba_session_generate(
            s,
            prompt.as_ptr(),
            prompt.len(),
            ptr::null(),
            4,
            None,
            ptr::null_mut(),
        )
    };
    assert_eq!(st, MAMBA_ERR_INVALID_ARG);
    assert_eq!(last_error(), "mamba_session_generate: cb is NULL");
    // SAFETY: freed once.
    unsafe {
        mamba_session_free(s);
        mamba_model_free(m);
    }
}

#[test]
fn generate_abort() {
    let m = load(&TestModelSpec::default());
    let s = session(m);
    let mut out: Vec<i32> = vec![-1];
    let prompt = [65i32];
    // SAFETY: live session; `collect` stops once the vector holds 5 tokens.
    let st = unsafe {
        mamba_session_generate(
            s,
            prompt.as_ptr(),
            1,
            ptr::null(),
            100,
            Some(collect),
            (&mut out as *mut Vec<i32>).cast(),
        )
    };
    assert_eq!(st, MAMBA_ERR_ABORTED);
    assert_eq!(out.len(), 5);
    assert!(last_error().contains("callback returned 1"));
    // SAFETY: freed once.
    unsafe {
        mamba_session_free(s);
        mamba_model_free(m);
    }
}

#[test]
fn embeddings_prefill_equals_steps() {
    let m = load(&TestModelSpec::default());
    let a = session(m);
    let b = session(m);
    // 133 vectors: two full prefill blocks and a partial one.
    let xs: Vec<f32> = (0..64 * 133).map(|i| ((i as f32) * 0.37).sin()).collect();
    let mut ha = vec![0.0f32; 64];
    let mut hb = vec![0.0f32; 64];
    // SAFETY: live sessions, valid buffers.
    unsafe {
        assert_eq!(
            mamba_session_prefill_embeddings(a, xs.as_ptr(), xs.len(), ha.as_mut_ptr(), 64),
            MAMBA_OK
        );
        for x in xs.chunks(64) {
            assert_eq!(
                mamba_session_step_embedding(b, x.as_ptr(), 64, hb.as_mut_ptr(), 64),
                MAMBA_OK
            );
        }
        assert_close(&ha, &hb);
        assert_eq!(
            mamba_session_prefill_embeddings(a, xs.as_ptr(), 100, ha.as_mut_ptr(), 64),
            MAMBA_ERR_INVALID_ARG
        );
        assert_eq!(
            mamba_session_prefill_embeddings(a, xs.as_ptr(), 64, ha.as_mut_ptr(), 63),
            MAMBA_ERR_BUFFER_TOO_SMALL
        );
        mamba_session_free(a);
        mamba_session_free(b);
        mamba_model_free(m);
    }
}

/// `mamba_sessions_step` with `out` outputs; returns (status, logits, next).
fn batch_step(
    ss: &[*mut mamba_session],
    toks: &[i32],
    v: usize,
) -> (mamba_status, Vec<f32>, Vec<i32>) {
    let mut l = vec![f32::NAN; ss.len() * v];
    let mut nx = vec![-7i32; ss.len()];
    // SAFETY: ss.len() live sessions, as many tokens, n x v floats, n ints.
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
    (st, l, nx)
}

/// The batched step on the CPU backend steps each session as a single step would
/// (bit for bit), the greedy picks are the logits' argmax, NULL outputs just feed.
#[test]
fn batched_step_on_cpu_equals_single_steps() {
    let m = load(&TestModelSpec::default());
    let v = 256;
    let batch: Vec<_> = (0..3).map(|_| session(m)).collect();
    let single: Vec<_> = (0..3).map(|_| session(m)).collect();
    for t in 0..20 {
        let toks: Vec<i32> = (0..3).map(|i| (t * 37 + i * 101) % 256).collect();
        let (st, l, nx) = batch_step(&batch, &toks, v);
        assert_eq!(st, MAMBA_OK, "{}", last_error());
        for i in 0..3 {
            let want = step(single[i as usize], toks[i as usize], v);
            let row = &l[i as usize * v..(i as usize + 1) * v];
            assert_eq!(row, &want[..], "step {t} session {i}");
            let best = (0..v).fold(0, |b, j| if row[j] > row[b] { j } else { b });
            assert_eq!(nx[i as usize], best as i32);
        }
    }
    // Both outputs NULL: tokens fed, state advanced like a single step.
    let toks = [5, 6, 7];
    // SAFETY: 3 live sessions and tokens; NULL outputs are allowed.
    let st = unsafe {
        mamba_sessions_step(
            batch.as_ptr(),
            toks.as_ptr(),
            3,
            ptr::null_mut(),
            0,
            ptr::null_mut(),
        )
    };
    assert_eq!(st, MAMBA_OK, "{}", last_error());
    for (i, &t) in toks.iter().enumerate() {
        step(single[i], t, v);
    }
    let (st, l, _) = batch_step(&batch, &[1, 2, 3], v);
    assert_eq!(st, MAMBA_OK);
    for i in 0..3 {
        assert_eq!(
            &l[i * v..(i + 1) * v],
            &step(single[i], i as i32 + 1, v)[..]
        );
    }
    // Input vectors: equal to single embedding steps.
    let d = 64;
    let xs: Vec<f32> = (0..3 * d)
        .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
        .collect();
    let mut h = vec![f32::NAN; 3 * d];
    // SAFETY: 3 live sessions, 3 x d floats in and out.
    let st = unsafe {
        mamba_sessions_step_embedding(
            batch.as_ptr(),
            3,
            xs.as_ptr(),
            xs.len(),
            h.as_mut_ptr(),
            h.len(),
        )
    };
    assert_eq!(st, MAMBA_OK, "{}", last_error());
    for i in 0..3 {
        let mut want = vec![0f32; d];
        // SAFETY: live session, d floats in and out.
        let st = unsafe {
            mamba_session_step_embedding(single[i], xs[i * d..].as_ptr(), d, want.as_mut_ptr(), d)
        };
        assert_eq!(st, MAMBA_OK);
        assert_eq!(&h[i * d..(i + 1) * d], &want[..]);
    }
    // SAFETY: live handles, freed once.
    unsafe {
        for s in batch.into_iter().chain(single) {
            mamba_session_free(s);
        }
        mamba_model_free(m);
    }
}

/// Every bad argument of the batched steps: the right status, a message naming
/// it, no output written and no session stepped.
#[test]
fn batched_step_bad_arguments() {
    let m = load(&TestModelSpec::default());
    let m2 = load(&TestModelSpec {
        seed: 9,
        ..TestModelSpec::default()
    });
    let v = 256;
    let (a, b, c) = (session(m), session(m), session(m2));
    let probe = session(m);
    let fresh = step(probe, 3, v);
    let check = |st: mamba_status, want: mamba_status, msg: &str| {
        assert_eq!(st, want, "{}", last_error());
        let e = last_error();
        assert!(e.starts_with("mamba_sessions_step"), "{e}");
        assert!(e.contains(msg), "{e} lacks {msg:?}");
    };
    let mut l = vec![f32::NAN; 2 * v];
    let mut nx = [-7i32; 2];
    let toks = [1i32, 2];
    // SAFETY: every pointer is NULL or valid for the lengths given.
    unsafe {
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
            0,
            l.as_mut_ptr(),
            l.len(),
            nx.as_mut_ptr(),
        );
        check(st, MAMBA_ERR_INVALID_ARG, "n is 0");
        let with_null = [a, ptr::null_mut()];
        let st = mamba_sessions_step(
            with_null.as_ptr(),
            toks.as_ptr(),
            2,
            l.as_mut_ptr(),
            l.len(),
            nx.as_mut_ptr(),
        );
        check(st, MAMBA_ERR_INVALID_ARG, "sessions[1] is NULL");
        let dup = [a, a];
        let st = mamba_sessions_step(
            dup.as_ptr(),
            toks.as_ptr(),
            2,
            l.as_mut_ptr(),
            l.len(),
            nx.as_mut_ptr(),
        );
        check(
            st,
            MAMBA_ERR_INVALID_ARG,
            "sessions[0] and sessions[1] are the same session",
        );
        let mixed = [a, c];
        let st = mamba_sessions_step(
            mixed.as_ptr(),
            toks.as_ptr(),
            2,
            l.as_mut_ptr(),
            l.len(),
            nx.as_mut_ptr(),
        );
        check(
            st,
            MAMBA_ERR_INVALID_ARG,
            "sessions[1] belongs to another model",
        );
        let st = mamba_sessions_step(
            ss.as_ptr(),
            toks.as_ptr(),
            2,
            l.as_mut_ptr(),
            2 * v - 1,
            nx.as_mut_ptr(),
        );
        check(st, MAMBA_ERR_BUFFER_TOO_SMALL, "needs n x vocab = 512");
        let bad = [1i32, 256];
        let st = mamba_sessions_step(
            ss.as_ptr(),
            bad.as_ptr(),
            2,
            l.as_mut_ptr(),
            l.len(),
            nx.as_mut_ptr(),
        );
        check(st, MAMBA_ERR_TOKEN_OUT_OF_RANGE, "tokens[1]");
        let neg = [-1i32, 2];
        let st = mamba_sessions_step(
            ss.as_ptr(),
            neg.as_ptr(),
            2,
            l.as_mut_ptr(),
            l.len(),
            nx.as_mut_ptr(),
        );
        check(st, MAMBA_ERR_TOKEN_OUT_OF_RANGE, "tokens[0]");
        // Embeddings: wrong xs_len, small hidden, NULL.
        let xs = vec![0.25f32; 2 * 64];
        let mut h = vec![f32::NAN; 2 * 64];
        let st = mamba_sessions_step_embedding(
            ss.as_ptr(),
            2,
            xs.as_ptr(),
            xs.len() - 1,
            h.as_mut_ptr(),
            h.len(),
        );
        check(
            st,
            MAMBA_ERR_INVALID_ARG,
            "xs_len is 127, must be n x d_model = 128",
        );
        let st = mamba_sessions_step_embedding(
            ss.as_ptr(),
            2,
            xs.as_ptr(),
            xs.len(),
            h.as_mut_ptr(),
            127,
        );
        check(st, MAMBA_ERR_BUFFER_TOO_SMALL, "hidden holds 127");
        let st = mamba_sessions_step_embedding(
            ss.as_ptr(),
            2,
            xs.as_ptr(),
            xs.len(),
            ptr::null_mut(),
            128,
        );
        check(st, MAMBA_ERR_INVALID_ARG, "hidden is NULL");
        let st = mamba_sessions_step_embedding(
            dup.as_ptr(),
            2,
            xs.as_ptr(),
            xs.len(),
            h.as_mut_ptr(),
            h.len(),
        );
        check(st, MAMBA_ERR_INVALID_ARG, "same session");
        let st = mamba_sessions_step_embedding(
            mixed.as_ptr(),
            2,
            xs.as_ptr(),
            xs.len(),
            h.as_mut_ptr(),
            h.len(),
        );
        check(st, MAMBA_ERR_INVALID_ARG, "another model");
        assert!(h.iter().all(|x| x.is_nan()), "hidden written on failure");
    }
    assert!(l.iter().all(|x| x.is_nan()), "logits written on failure");
    assert_eq!(nx, [-7, -7], "next_tokens written on failure");
    // No session was stepped: a and b still give a fresh session's first step.
    assert_eq!(step(a, 3, v), fresh);
    assert_eq!(step(b, 3, v), fresh);
    // SAFETY: live handles, freed once.
    unsafe {
        for s in [a, b, c, probe] {
            mamba_session_free(s);
        }
        mamba_model_free(m);
        mamba_model_free(m2);
    }
}
