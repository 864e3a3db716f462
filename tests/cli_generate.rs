//! `mamba-cli generate` and `perplexity` on the shipped models.

mod common;

use common::*;
use std::process::Command;

fn cli(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mamba-cli"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mamba-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn generate_is_seeded_and_uses_the_shipped_model_by_default() {
    let a = cli(&["generate", "Ownership", "--max-tokens", "48", "--seed", "5"]);
    let b = cli(&["generate", "Ownership", "--max-tokens", "48", "--seed", "5"]);
    let c = cli(&["generate", "Ownership", "--max-tokens", "48", "--seed", "6"]);
    assert_eq!(a.0, b.0, "same seed, different text");
    assert_ne!(a.0, c.0, "different seeds, same text");
    assert!(a.0.starts_with("Ownership") && a.0.len() > 40, "{:?}", a.0);
    assert!(
        a.1.contains("48 generated") && a.1.contains("tok/s"),
        "{}",
        a.1
    );
    // Greedy decoding is the same whatever the seed.
    let g1 = cli(&[
        "generate",
        "fn",
        "--max-tokens",
        "24",
        "--temperature",
        "0",
        "--seed",
        "1",
    ]);
    let g2 = cli(&[
        "generate",
        "fn",
        "--max-tokens",
        "24",
        "--temperature",
        "0",
        "--seed",
        "2",
    ]);
    assert_eq!(g1.0, g2.0);
}

#[test]
fn generate_rejects_bad_sampling_parameters() {
    let out = Command::new(env!("CARGO_BIN_EXE_mamba-cli"))
        .args(["generate", "x", "--top-p", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("top_p"));
}

#[test]
fn perplexity_json_reports_bits_per_byte() {
    let dir = temp_dir("ppl");
    let text: String = std::fs::read_to_string(repo().join("data/heldout.txt"))
        .unwrap()
        .chars()
        .take(1500)
        .collect();
    let f = dir.join("t.txt");
    std::fs::write(&f, &text).unwrap();
    let (out, _) = cli(&[
        "perplexity",
        "--model",
        "models/tiny-q8_0.gguf",
        "--file",
        f.to_str().unwrap(),
        "--json",
    ]);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let bpb = j["bits_per_byte"].as_f64().unwrap();
    let ppl = j["perplexity"].as_f64().unwrap();
    // A trained byte model is far better than uniform (8 bits) on held-out English.
    assert!(bpb > 0.5 && bpb < 2.5, "bits per byte {bpb}");
    assert!(
        (ppl.ln() / std::f64::consts::LN_2 - bpb).abs() < 1e-6,
        "byte model: ppl = 2^bpb"
    );
}
