#!/usr/bin/env bash
# CI smoke run of the cargo-fuzz targets (fuzz/): each target briefly, starting from
# its committed seed corpus (fuzz/corpus/<target>/) plus the crash regressions
# (fuzz/regressions/<target>/). New corpus entries go to a temporary folder, so the
# committed corpus stays as it is. A crash fails the run and leaves the input in
# fuzz/artifacts/<target>/: copy it to fuzz/regressions/<target>/ and fix the bug.
#
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET (default 30)] [TARGET...]
# Needs a nightly toolchain (rustup toolchain install nightly); without one the run is
# skipped with a message and exit 0. cargo-fuzz is installed if missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${1:-30}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(fuzz_gguf fuzz_safetensors fuzz_state fuzz_ffi_load)
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz-smoke: SKIPPED: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo +nightly install cargo-fuzz --locked
fi

echo "fuzz-smoke: building ${targets[*]}"
for t in "${targets[@]}"; do
    cargo +nightly fuzz build "$t"
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for t in "${targets[@]}"; do
    mkdir -p "$work/$t" "fuzz/regressions/$t"
    echo "== $t: ${secs}s"
    # -rss_limit_mb: a model file must never make the loader allocate past this.
    if ! cargo +nightly fuzz run "$t" "$work/$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        2>"$work/$t.log"; then
        status=1
        echo "fuzz-smoke: $t FAILED; the log ends:"
        tail -n 60 "$work/$t.log"
    else
        grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' \
            "$work/$t.log" | sed "s/^/  /" || true
    fi
done
[ "$status" -eq 0 ] && echo "fuzz-smoke: all targets clean"
exit "$status"
