#!/usr/bin/env bash
# Installs what the tests need, then runs every test this project has that runs
# without a GPU (GPU tests skip with a message; run them on a GPU machine with
# MAMBA_REQUIRE_GPU=1). Each step is timed; the last line is the summary.
#
#   bash scripts/test-all.sh
#
# Environment: MAMBA_FUZZ_SECS (default 20) seconds per fuzz target;
# MAMBA_SOAK_STEPS (default 20000) decode steps of the short soak.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TERM_COLOR=never

passed=0
failed=0
failures=()
step() {
    local name="$1"
    shift
    printf '\n######## %s\n' "$name"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        printf '######## %s: ok (%ds)\n' "$name" $((SECONDS - t0))
    else
        failed=$((failed + 1))
        failures+=("$name")
        printf '######## %s: FAILED (%ds)\n' "$name" $((SECONDS - t0))
    fi
}

step "setup (rustup targets, Debian packages)" bash scripts/setup.sh || true
if [ "$failed" -ne 0 ]; then
    echo "test-all: setup failed; the steps below may fail for want of a tool"
fi
step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy -D warnings" cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test --workspace" cargo test --workspace --locked
step "CUDA kernels compiled by NVRTC 12.6 and 13.0 (compute_72/87/90, no GPU)" bash scripts/test-nvrtc.sh
step "main job: mamba-cli generate with the shipped model" bash -c '
    out=$(cargo run --release --locked --bin mamba-cli -- generate "The Rust programming language" --max-tokens 64)
    echo "$out"
    [ ${#out} -gt 60 ]'
step "GGUF files read by llama.cpp's gguf-py" bash scripts/test-gguf-peer.sh
step "C ABI: header check, C/C++/Python tests and examples under valgrind" bash scripts/test-c.sh
step "C ABI under AddressSanitizer" bash scripts/test-c-asan.sh
step "C ABI: 16-thread stress" bash scripts/test-concurrency.sh
step "Cortex-M firmware under QEMU = host output" bash scripts/test-edge.sh
step "aarch64 under qemu-aarch64 (NEON path)" bash scripts/test-aarch64.sh
step "Miri over mamba-core" bash scripts/miri.sh
step "fuzz targets, briefly" bash scripts/fuzz-smoke.sh "${MAMBA_FUZZ_SECS:-20}"
step "soak, short" bash scripts/soak-short.sh "${MAMBA_SOAK_STEPS:-20000}"

echo
if [ "$failed" -ne 0 ]; then
    printf 'failed steps:\n'
    printf '  %s\n' "${failures[@]}"
fi
echo "test-all: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
