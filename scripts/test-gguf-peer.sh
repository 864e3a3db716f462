#!/usr/bin/env bash
# Reads the GGUF files `mamba-cli convert` writes with llama.cpp's own Python package
# (gguf-py) and checks names, dims, types, keys and values (tools/check_gguf_llamacpp.py).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python3 -m pip install -q --disable-pip-version-check "gguf==0.19.0" safetensors numpy 2>&1 \
    | grep -v -i "running pip as the 'root' user" || true
cargo build --release --locked --bin mamba-cli
cli="${CARGO_TARGET_DIR:-$root/target}/release/mamba-cli"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
n=0
for fx in tests/fixtures/conformance/*/; do
    name="$(basename "$fx")"
    for t in f32 q8_0; do
        "$cli" convert "$fx" -o "$tmp/$name-$t.gguf" --type "$t" 2>/dev/null
        python3 tools/check_gguf_llamacpp.py "$tmp/$name-$t.gguf" "$fx"
        n=$((n + 1))
    done
done
for m in models/*.gguf; do
    python3 tools/check_gguf_llamacpp.py "$m"
    n=$((n + 1))
done
echo "gguf-peer: $n passed, 0 failed"
