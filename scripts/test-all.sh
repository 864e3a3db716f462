#!/usr/bin/env bash
# Installs what the tests need, then runs every test this project has that runs
# without a GPU (GPU tests skip with a message; run them on a GPU machine with
# MAMBA_REQUIRE_GPU=1). Each step is timed; the last line is the summary.
#
#   bash scripts/test-all.sh
#
# Environment: MAMBA_FUZZ_SECS (default 20) seconds per fuzz target;
# MAMBA_SOAK_STEPS (default 20000) decode steps of the short soak;
# MAMBA_KEEP_TARGETS=1 keeps every build folder (see "Disk" below).
#
# Disk: a CI machine's disk is shared and has run out under this script. So debug
# builds carry line tables only and no incremental state, and each build folder that
# no later step uses is removed once its step is done (target/debug after the NVRTC
# step, the cross, sanitizer, Miri and fuzz folders after theirs). A clean clone's
# build folders peak at about 2.1 GiB, against 9 GiB before (README, "Tests"); every
# step prints the space left.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"

free_space() { df -Pk . | awk 'NR == 2 { printf "%.1f GiB free", $4 / 1048576 }'; }
# Removes build folders no later step needs (not with MAMBA_KEEP_TARGETS=1).
prune() {
    [ "${MAMBA_KEEP_TARGETS:-0}" = 1 ] && return 0
    local d
    for d in "$@"; do
        if [ -e "$d" ]; then
            rm -rf "$d"
            echo "test-all: removed $d, no later step needs it ($(free_space))"
        fi
    done
}
echo "test-all: $(free_space) on $(df -P . | awk 'NR == 2 { print $6 }')"

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
        printf '######## %s: ok (%ds, %s)\n' "$name" $((SECONDS - t0)) "$(free_space)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        printf '######## %s: FAILED (%ds, %s)\n' "$name" $((SECONDS - t0)) "$(free_space)"
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
prune target/debug
step "main job: mamba-cli generate with the shipped model" bash -c '
    out=$(cargo run --release --locked --bin mamba-cli -- generate "The Rust programming language" --max-tokens 64)
    echo "$out"
    [ ${#out} -gt 60 ]'
step "GGUF files read by llama.cpp's gguf-py" bash scripts/test-gguf-peer.sh
step "C ABI: header check, C/C++/Python tests and examples under valgrind" bash scripts/test-c.sh
step "C ABI under AddressSanitizer" bash scripts/test-c-asan.sh
step "C ABI: 16-thread stress" bash scripts/test-concurrency.sh
prune target/tsan
step "Cortex-M firmware under QEMU = host output" bash scripts/test-edge.sh
prune target/edge target/thumbv7em-none-eabihf target/firmware-qemu
step "aarch64 under qemu-aarch64 (NEON path)" bash scripts/test-aarch64.sh
prune target/aarch64
step "Miri over mamba-core" bash scripts/miri.sh
prune target/miri
step "fuzz targets, briefly" bash scripts/fuzz-smoke.sh "${MAMBA_FUZZ_SECS:-20}"
prune fuzz/target
step "soak, short" bash scripts/soak-short.sh "${MAMBA_SOAK_STEPS:-20000}"

echo
if [ "$failed" -ne 0 ]; then
    printf 'failed steps:\n'
    printf '  %s\n' "${failures[@]}"
fi
echo "test-all: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
