#!/usr/bin/env bash
# Miri over mamba-core's tests: undefined behaviour, out-of-bounds and misaligned
# accesses, invalid values. Miri runs the scalar path: mamba-core picks SIMD kernels
# from compile-time target features (none are enabled for Miri's target) and
# MAMBA_KERNELS=scalar covers any test that asks the environment. Tests too slow for
# the interpreter are marked #[cfg_attr(miri, ignore)].
#
#   scripts/miri.sh [extra cargo test args]
# Needs nightly; without it the run is skipped with a message and exit 0.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "miri: SKIPPED: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    rustup +nightly component add miri rust-src
fi
export MAMBA_KERNELS=scalar
# Strict provenance and symbolic alignment catch pointer tricks that happen to work.
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-strict-provenance -Zmiri-symbolic-alignment-check}"
cargo +nightly miri setup
cargo +nightly miri test -p mamba-core --lib --tests "$@"
