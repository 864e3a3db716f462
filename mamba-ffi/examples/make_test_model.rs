//! Write a small random-weight, byte-level mamba GGUF for the C tests and examples:
//! `make_test_model OUT.gguf [--seed S] [--vocab V] [--d-model D] [--n-layer L]
//! [--d-state N] [--d-conv K]`. The same arguments give the same file.

#[allow(dead_code)]
#[path = "../src/test_model.rs"]
mod test_model;

use std::process::ExitCode;
use test_model::TestModelSpec;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut spec = TestModelSpec::default();
    let mut out = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if !a.starts_with("--") {
            out = Some(a.to_string());
            i += 1;
            continue;
        }
        let Some(val) = args.get(i + 1).and_then(|v| v.parse::<u64>().ok()) else {
            eprintln!("make_test_model: {a} needs a number");
            return ExitCode::FAILURE;
        };
        let slot: &mut usize = match a {
            "--seed" => {
                spec.seed = val;
                i += 2;
                continue;
            }
            "--vocab" => &mut spec.vocab,
            "--d-model" => &mut spec.d_model,
            "--n-layer" => &mut spec.n_layer,
            "--d-state" => &mut spec.d_state,
            "--d-conv" => &mut spec.d_conv,
            _ => {
                eprintln!("make_test_model: unknown option {a}");
                return ExitCode::FAILURE;
            }
        };
        *slot = val as usize;
        i += 2;
    }
    let Some(out) = out else {
        eprintln!("usage: make_test_model OUT.gguf [--seed S] [--vocab V] [--d-model D] ...");
        return ExitCode::FAILURE;
    };
    let mut f = match std::fs::File::create(&out) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("make_test_model: {out}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = test_model::writer(&spec).write_to(&mut f) {
        eprintln!("make_test_model: {out}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
