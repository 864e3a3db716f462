#!/usr/bin/env bash
# The edge check (issue 8), microcontroller part:
#   1. mamba-core builds for thumbv7em-none-eabihf (Cortex-M4F/M7), without and with the
#      `defmt` feature;
#   2. the firmware example (examples/firmware-qemu) runs under qemu-system-arm and the
#      text it prints is byte-identical to `mamba-cli generate --no-echo` on the host for
#      the same model, prompt, seed and sampling, on the scalar kernels
#      (MAMBA_KERNELS=scalar: the firmware runs mamba-core's Scalar);
#   3. the firmware's flash and RAM, measured from the image.
# The host's default (SIMD) path is compared too, for information only: its Q8_0
# mat-vec quantizes activations to int8 (as ggml does), so its text may differ.
#
#   scripts/test-edge.sh
# Installs what it needs (the rustup target, qemu-system-arm) through run.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
fw="$root/examples/firmware-qemu"

# Mirrors the firmware's PROMPT, MAX_TOKENS and PARAMS (examples/firmware-qemu/src/main.rs).
model=models/tiny-q8_0.gguf
prompt="The Rust compiler"
sampling=(--max-tokens 160 --seed 42 --temperature 0.8 --top-k 40 --top-p 0.95 --repeat-penalty 1.1)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if command -v rustup >/dev/null 2>&1; then
    rustup target add thumbv7em-none-eabihf
fi
echo "== mamba-core for thumbv7em-none-eabihf, without and with defmt"
cargo build --locked -p mamba-core --target thumbv7em-none-eabihf --target-dir target/edge
cargo build --locked -p mamba-core --target thumbv7em-none-eabihf --target-dir target/edge --features defmt

echo "== firmware under qemu-system-arm (mps2-an386)"
"$fw/run.sh" > "$tmp/firmware.txt"
echo "firmware printed:"
cat "$tmp/firmware.txt"

echo "== mamba-cli generate on the host"
cargo build --locked --release --bin mamba-cli
cli=("${CARGO_TARGET_DIR:-target}/release/mamba-cli" generate "$prompt" --model "$model" "${sampling[@]}" --no-echo)
MAMBA_KERNELS=scalar "${cli[@]}" > "$tmp/host-scalar.txt"
"${cli[@]}" > "$tmp/host-default.txt"

status=0
if cmp -s "$tmp/firmware.txt" "$tmp/host-scalar.txt"; then
    echo "PASS: firmware text == host text (MAMBA_KERNELS=scalar), $(wc -c < "$tmp/firmware.txt") bytes"
else
    echo "FAIL: firmware text != host text (MAMBA_KERNELS=scalar); the host printed:"
    cat "$tmp/host-scalar.txt"
    cmp "$tmp/firmware.txt" "$tmp/host-scalar.txt" || true
    status=1
fi
if cmp -s "$tmp/firmware.txt" "$tmp/host-default.txt"; then
    echo "info: the host's default kernel path prints the same text too"
else
    echo "info: the host's default kernel path prints another text (int8 activations):"
    cat "$tmp/host-default.txt"
fi

echo "== firmware size"
"$fw/size.sh"
exit "$status"
