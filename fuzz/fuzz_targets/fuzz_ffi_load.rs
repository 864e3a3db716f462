//! `mamba_model_load_memory` through the C ABI on arbitrary bytes, then a session:
//! init, step, prefill, state size/save/load, free. The C ABI must agree with the
//! Rust loader (`LoadedModel::from_gguf_bytes`) on which inputs are models.
#![no_main]

#[path = "../harness.rs"]
mod harness;

use mamba::*;
use std::ptr;

fn run(data: &[u8]) {
    let mut p = mamba_model_default_params();
    p.n_threads = 1;
    let mut m: *mut mamba_model = ptr::null_mut();
    // SAFETY: data/len describe a live slice; p and m are valid for the call.
    let st = unsafe { mamba_model_load_memory(data.as_ptr().cast(), data.len(), &p, &mut m) };
    let rust_ok = mamba_rt::LoadedModel::from_gguf_bytes(data).is_ok();
    if st != MAMBA_OK {
        assert!(m.is_null(), "out-param written on failure");
        assert!(
            !rust_ok,
            "C ABI refused a model the Rust loader takes (status {st})"
        );
        assert!(!mamba_last_error().is_null());
        return;
    }
    assert!(rust_ok, "C ABI took a model the Rust loader refuses");
    assert!(!m.is_null());
    // SAFETY: m is a live model from load_memory; every buffer below is sized as
    // passed; the session and model are freed once, session first.
    unsafe {
        let v = mamba_model_vocab_size(m);
        assert!(v > 0 && mamba_model_d_model(m) > 0 && mamba_model_n_layer(m) > 0);
        let mut s: *mut mamba_session = ptr::null_mut();
        assert_eq!(mamba_session_init(m, &mut s), MAMBA_OK);
        if data.len() <= 1 << 20 {
            let mut logits = vec![0.0f32; v as usize];
            assert_eq!(
                mamba_session_step_token(s, v - 1, logits.as_mut_ptr(), logits.len()),
                MAMBA_OK
            );
            assert_eq!(
                mamba_session_step_token(s, v, logits.as_mut_ptr(), logits.len()),
                MAMBA_ERR_TOKEN_OUT_OF_RANGE
            );
            let toks = [0i32, v - 1, 0];
            assert_eq!(
                mamba_session_prefill(
                    s,
                    toks.as_ptr(),
                    toks.len(),
                    logits.as_mut_ptr(),
                    logits.len()
                ),
                MAMBA_OK
            );
            let n = mamba_session_state_size(s);
            let mut blob = vec![0u8; n];
            let mut written = 0usize;
            assert_eq!(
                mamba_session_state_save(s, blob.as_mut_ptr().cast(), n, &mut written),
                MAMBA_OK
            );
            let st = mamba_session_state_load(s, blob.as_ptr().cast(), written);
            // Weights may drive the state to infinity, which a load rightly refuses.
            assert!(
                st == MAMBA_OK || st == MAMBA_ERR_BAD_STATE,
                "state load: {st}"
            );
        }
        // The model may go first: the session holds its own reference.
        mamba_model_free(m);
        mamba_session_free(s);
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(data));
