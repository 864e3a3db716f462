#!/bin/bash
# One GPU-machine call that checks everything GPU-side at once (the `run` tool,
# from the repository root, stage_device.sh's executables in .device/): the C
# API's CUDA backend (Rust tests and the C programs), the whole-model prefill
# tests, the scan tests and benchmark, the prefill benchmark and `mamba-cli
# bench --backend cuda` (prefill and decode streams). Log in $OUT/log.
set -u
source "$(dirname "$0")/device_env.sh"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader

stamp "tests: cuda_prefill (background), C API"
timeout 150 $D/cuda_prefill --nocapture --test-threads=4 > "$OUT/tests_prefill.log" 2>&1 &
pp=$!
timeout 200 $D/cuda_backend --nocapture --test-threads=4 > "$OUT/tests_ffi.log" 2>&1
echo "cuda_backend rc=$?"
grep -E "panicked|FAILED|test result|skipping|rel |max " "$OUT/tests_ffi.log" | cut -c1-300 | head -40
for t in test_cuda_batch test_cuda; do
    timeout 60 $D/$t models/default-f32.gguf > /tmp/c.log 2>&1
    echo "$t rc=$?"; tail -8 /tmp/c.log
done
wait $pp; echo "cuda_prefill rc=$?"
grep -E "^rel |panicked|FAILED|test result" "$OUT/tests_prefill.log" | cut -c1-300 | head -40

stamp scan
timeout 60 $D/selective_scan --test-threads=8 > /tmp/s.log 2>&1; echo "selective_scan tests rc=$? $(grep 'test result' /tmp/s.log)"
timeout 90 $D/scan_bench --runs 15 2>&1 | grep -v back-to-back
for v in "nt8|8|" "nt8_nosplit|8|--chunk 100000000"; do
    IFS='|' read -r label nt bargs <<< "$v"
    echo "== scan variant $label (bf16)"
    MAMBA_CUDA_SCAN_MAX_NT=$nt timeout 60 $D/scan_bench --runs 7 --bf16 $bargs 2>&1 | grep -v back-to-back | tail -9
done

stamp "random 130m model, prefill bench"
timeout 60 $D/mamba-cli random-model --out /tmp/m130.gguf --type f16 > /dev/null 2>&1; ls -la /tmp/m130.gguf
timeout 120 $D/prefill_bench /tmp/m130.gguf --runs 20 --gemm bf16,f16,tf32 > "$OUT/prefill_bench.log" 2>&1
echo "prefill_bench rc=$?"; cat "$OUT/prefill_bench.log"

stamp "mamba-cli bench --backend cuda"
timeout 60 $D/mamba-cli bench --model /tmp/m130.gguf --prompt 2048 --gen 50 --backend cuda --gemm bf16 --reps 10 --json
for w in f16 q8_0; do
    for s in 1 64 256; do
        timeout 60 $D/mamba-cli bench --model /tmp/m130.gguf --prompt 512 --gen 50 --backend cuda --streams $s --weights $w --reps 3 --json
    done
done
timeout 60 $D/mamba-cli bench --model models/default-f32.gguf --prompt 512 --gen 50 --backend cuda --streams 1 --reps 3
stamp done
