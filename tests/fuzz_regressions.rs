//! Replays every input the fuzzers ever crashed on (`fuzz/regressions/<target>/*`) and
//! the seed corpus (`fuzz/corpus/<target>/*`) through the same code the fuzz targets
//! run (`fuzz/harness.rs`), on stable and without libFuzzer. A fixed crash stays fixed.
//!
//! Adding one: copy the file from `fuzz/artifacts/<target>/` to
//! `fuzz/regressions/<target>/` with a name that says what it was.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

/// Runs `f` on every regression and seed input of `target`; names the failing file.
fn replay(target: &str, f: impl Fn(&[u8])) {
    let files: Vec<PathBuf> = ["regressions", "corpus"]
        .iter()
        .flat_map(|k| inputs(k, target))
        .collect();
    for p in &files {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&data)));
        assert!(r.is_ok(), "{target}: {} fails again", p.display());
    }
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn fuzz_gguf_regressions() {
    replay("fuzz_gguf", harness::gguf);
}

#[test]
fn fuzz_safetensors_regressions() {
    replay("fuzz_safetensors", harness::safetensors);
}

#[test]
fn fuzz_state_regressions() {
    replay("fuzz_state", harness::state);
}

/// The C ABI target's inputs, through the loader the C ABI calls
/// (`LoadedModel::from_gguf_bytes`) and a session: the root package does not link
/// the C library, and mamba-ffi's own tests cover the boundary itself.
#[test]
fn fuzz_ffi_load_regressions() {
    replay("fuzz_ffi_load", |d| {
        let _ = harness::loaded_model(d);
    });
}
