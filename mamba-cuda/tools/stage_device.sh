#!/bin/bash
# Builds the release test and bench executables and copies them to .device/
# (git-ignored) for the GPU machine. Run from the workspace root.
set -euo pipefail
root=${DEST_ROOT:-$(pwd)}
mkdir -p "$root/.device"
pick() {  # cargo args...: copies each test/bench executable, named by its target
    cargo "$@" --message-format=json 2>/dev/null | python3 -c '
import sys, json, shutil
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] != ["lib"]:
        name = m["target"]["name"]
        name = name + "_bench" if m["target"]["kind"] == ["bench"] else name
        name = "mamba-cli" if m["target"]["kind"] == ["bin"] else name
        shutil.copy(m["executable"], sys.argv[1] + "/" + name)
        print(name)
' "$root/.device"
}
pick test --release -p mamba-cuda --no-run
pick build --release -p mamba-cuda --benches
# Phase 2: the whole-model prefill test (root package: it reads the HF
# conformance fixtures through mamba_rt) and mamba-cli (random-model, logits
# --backend cuda). The fixtures travel with the working tree.
pick test --release -p mamba-rt --test cuda_prefill --no-run
# Phase 3: the decode test against the conformance models (root package).
pick test --release -p mamba-rt --test cuda_decode --no-run
pick build --release -p mamba-rt --bin mamba-cli
# The C API's MAMBA_BACKEND_CUDA (run from the repository root: it reads models/).
pick test --release -p mamba-ffi --test cuda_backend --no-run
# The C API's batched GPU step from C (test_cuda_batch, test_cuda), beside libmamba.so.0 (rpath $ORIGIN).
cargo build --release -p mamba-ffi && t="${CARGO_TARGET_DIR:-target}/release" && cp "$t/libmamba.so" "$root/.device/libmamba.so.0" && for c in test_cuda_batch test_cuda; do gcc -std=c99 -O1 -Iinclude "tests/c/$c.c" -o "$root/.device/$c" -L"$t" -lmamba -Wl,-rpath,'$ORIGIN' -lm; done
# Line tables make the executables ~20x larger than the 64 MiB a device call carries.
strip "$root"/.device/* 2>/dev/null || true
ls -la "$root/.device"
