//! Conformance against transformers' MambaForCausalLM (float64 references made by
//! tools/make_conformance.py): logits and final hidden states from the HF folder and from
//! the converted GGUF, in step and prefill mode, through the `mamba-cli` interface
//! other tools drive.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

const TOL: f64 = 1e-5;

fn cli(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_mamba-cli"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mamba-cli {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tokens_of(fx: &Path) -> String {
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.join("tokens.json")).unwrap()).unwrap();
    j["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn check_model(fx: &Path, model: &Path, tmp: &Path, label: &str) {
    let toks = tokens_of(fx);
    let ref_logits = read_f64(&fx.join("logits.f64"));
    for mode in ["step", "prefill"] {
        let out = tmp.join(format!("logits-{mode}.f32"));
        cli(&[
            "logits",
            "--model",
            model.to_str().unwrap(),
            "--tokens",
            &toks,
            "--out",
            out.to_str().unwrap(),
            "--mode",
            mode,
        ]);
        let got = read_f32(&out);
        let e = rel_err(&got, &ref_logits);
        println!("{label} logits {mode}: rel err {e:.2e}");
        assert!(e <= TOL, "{label}: logits ({mode}) rel err {e:.3e} > {TOL}");
    }
    let out = tmp.join("hidden.f32");
    cli(&[
        "hidden",
        "--model",
        model.to_str().unwrap(),
        "--embeds",
        fx.join("embeds.f32").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let e = rel_err(&read_f32(&out), &read_f64(&fx.join("hidden.f64")));
    println!("{label} hidden: rel err {e:.2e}");
    assert!(e <= TOL, "{label}: hidden rel err {e:.3e} > {TOL}");
}

#[test]
fn hf_folders_and_converted_gguf_match_transformers() {
    let fxs = fixtures();
    assert!(
        fxs.len() >= 6,
        "expected the conformance fixtures, found {}",
        fxs.len()
    );
    for fx in fxs {
        let name = fx.file_name().unwrap().to_str().unwrap().to_string();
        let tmp = temp_dir(&format!("conf-{name}"));
        check_model(&fx, &fx, &tmp, &format!("{name} (HF folder)"));
        let gguf = tmp.join("model.gguf");
        cli(&[
            "convert",
            fx.to_str().unwrap(),
            "-o",
            gguf.to_str().unwrap(),
        ]);
        check_model(&fx, &gguf, &tmp, &format!("{name} (GGUF)"));
    }
}
