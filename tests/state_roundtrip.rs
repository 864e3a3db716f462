//! Session behaviour on real model bytes: save/restore continues exactly, reset restarts,
//! blobs from other models are refused.

mod common;

use common::*;
use mamba_core::Scalar;
use mamba_rt::{LoadedModel, Session};

#[test]
fn restore_continues_exactly_and_reset_restarts() {
    let m = LoadedModel::from_gguf_bytes(&tiny_gguf(Tiny::default(), 1)).unwrap();
    let v = m.config().vocab_size;
    let mut a = Session::new(&m);
    let mut la = vec![0f32; v];
    for t in [1u32, 5, 7, 2] {
        a.step_token(&Scalar, t, &mut la).unwrap();
    }
    let blob = a.save_state();
    let mut b = Session::new(&m);
    b.load_state(&blob).unwrap();
    let mut lb = vec![0f32; v];
    for t in [9u32, 3, 3, 0] {
        a.step_token(&Scalar, t, &mut la).unwrap();
        b.step_token(&Scalar, t, &mut lb).unwrap();
        assert_eq!(la, lb, "restored session diverged");
    }
    // Reset gives the same logits as a fresh session.
    a.reset();
    let mut fresh = Session::new(&m);
    a.step_token(&Scalar, 4, &mut la).unwrap();
    fresh.step_token(&Scalar, 4, &mut lb).unwrap();
    assert_eq!(la, lb);
}

#[test]
fn state_from_another_model_is_refused() {
    let m1 = LoadedModel::from_gguf_bytes(&tiny_gguf(Tiny::default(), 1)).unwrap();
    let m2 = LoadedModel::from_gguf_bytes(&tiny_gguf(Tiny::default(), 2)).unwrap();
    let m3 = LoadedModel::from_gguf_bytes(&tiny_gguf(
        Tiny {
            n: 4,
            ..Tiny::default()
        },
        1,
    ))
    .unwrap();
    let mut s1 = Session::new(&m1);
    let mut l = vec![0f32; m1.config().vocab_size];
    s1.step_token(&Scalar, 3, &mut l).unwrap();
    let blob = s1.save_state();
    let mut s2 = Session::new(&m2);
    let e = s2.load_state(&blob).unwrap_err().to_string();
    assert!(e.contains("another model"), "{e}");
    let mut s3 = Session::new(&m3);
    assert!(s3.load_state(&blob).is_err());
    // Corrupt blobs: every error names the problem, and the state stays as it was.
    let before = s2.state().to_vec();
    let mut bad = blob.clone();
    bad[0] = b'X';
    assert!(
        s2.load_state(&bad)
            .unwrap_err()
            .to_string()
            .contains("magic")
    );
    assert!(s2.load_state(&blob[..blob.len() - 4]).is_err());
    assert!(
        s2.load_state(&blob[..10])
            .unwrap_err()
            .to_string()
            .contains("header")
    );
    let mut nan = blob.clone();
    let at = nan.len() - 4;
    nan[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut s1b = Session::new(&m1);
    assert!(
        s1b.load_state(&nan)
            .unwrap_err()
            .to_string()
            .contains("NaN")
    );
    assert_eq!(s2.state(), &before[..]);
}

#[test]
fn embedding_path_matches_token_path_through_embedding_rows() {
    // Feeding the embedding row of a token as an input vector must give the same
    // hidden state the token path computes before its head.
    let m = LoadedModel::from_gguf_bytes(&tiny_gguf(Tiny::default(), 3)).unwrap();
    let c = *m.config();
    let view = m.view();
    let mut row = vec![0f32; c.d_model];
    let mut s_emb = Session::new(&m);
    let mut s_tok = Session::new(&m);
    let mut hidden = vec![0f32; c.d_model];
    let mut logits = vec![0f32; c.vocab_size];
    for t in [2u32, 8, 1] {
        view.embed().row_to_f32(t as usize, &mut row);
        s_emb.step_embedding(&Scalar, &row, &mut hidden).unwrap();
        s_tok.step_token(&Scalar, t, &mut logits).unwrap();
    }
    // logits = E . hidden for a tied head.
    let mut want = vec![0f32; c.vocab_size];
    mamba_core::kernels::scalar_matvec(&view.head(), &hidden, &mut want);
    for (a, b) in logits.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }
}
