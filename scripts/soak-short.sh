#!/usr/bin/env bash
# CI soak: examples/soak.rs for 20,000 decode steps (override with the first
# argument) on the shipped byte-level model, one thread: finite logits, bounded state,
# flat resident memory, state save/restore round trips. The full run is
#   cargo run --release --example soak -- --steps 1000000 --model models/default-q8_0.gguf
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
steps="${1:-20000}"
model="${SOAK_MODEL:-models/default-q8_0.gguf}"
if [ ! -f "$model" ]; then
    echo "soak-short: SKIPPED: $model is missing"
    exit 0
fi
cargo run --release --locked --example soak -- --steps "$steps" --model "$model" --threads 1
