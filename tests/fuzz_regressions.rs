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

/// Found by fuzz_gguf and fuzz_ffi_load (`fuzz/regressions/*/q8act-subnormal-overflow`):
/// a block of activations whose largest magnitude is below f32's normal range
/// (|x| < 1.2e-38 * 127) made `Q8Act::quantize` compute `1/d` = infinity, saturate
/// `t as i32` to i32::MAX and overflow its i32 sum: a panic with overflow checks,
/// quants of -1 (`i32::MAX as i8`) and a garbage `s` without. Any model whose
/// activations get that small on a Q8_0/Q4_0 layer of the SIMD path hits it.
#[test]
fn q8_act_quantize_subnormal_block() {
    use mamba_core::simd::act::Q8Act;
    for amax in [
        1e-40f32,
        1e-39,
        f32::MIN_POSITIVE,
        f32::MIN_POSITIVE * 100.0,
    ] {
        let x: Vec<f32> = (0..32)
            .map(|i| if i % 2 == 0 { amax } else { -amax / 2.0 })
            .collect();
        let q = Q8Act::quantize(&x);
        assert!(q.d.is_finite() && q.s.is_finite(), "amax {amax}: {q:?}");
        // Either quantized faithfully (+127 / about -64) or flushed to a zero block.
        let ok = q.qs.iter().all(|&v| v == 0)
            || q.qs.iter().enumerate().all(|(i, &v)| {
                if i % 2 == 0 {
                    v == 127
                } else {
                    (-64..=-63).contains(&v)
                }
            });
        assert!(ok, "amax {amax}: quants {:?}", q.qs);
    }
}
