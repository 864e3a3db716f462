#!/bin/bash
# One GPU-machine call that checks everything GPU-side at once (the `run` tool,
# from the repository root, stage_device.sh's executables in .device/): every
# GPU test binary (kernel compile, conv, decode, the C API's CUDA backend from
# Rust and from C, the whole-model prefill), the scan tests with the staged
# body and the plain one, the scan benchmark and its variants, the prefill
# benchmark and `mamba-cli
# bench --backend cuda` (prefill, one decode stream). The decode-stream
# benchmarks are in device_v9.sh / device_decode.sh. Log in $OUT/log.
set -u
source "$(dirname "$0")/device_env.sh"

stamp "tests: compile, causal_conv1d, decode, cuda_decode, cuda_prefill (background), C API"
pids=()
for t in compile causal_conv1d decode cuda_decode; do
    timeout 200 $D/$t --test-threads=4 > "$OUT/tests_$t.log" 2>&1 &
    pids+=($!)
done
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
for i in "${!pids[@]}"; do wait "${pids[$i]}"; done
for t in compile causal_conv1d decode cuda_decode; do
    echo "$t: $(grep -E 'test result' "$OUT/tests_$t.log") $(grep -c panicked "$OUT/tests_$t.log") panics"
done

stamp scan
timeout 60 $D/selective_scan --test-threads=8 > "$OUT/tests_scan.log" 2>&1; echo "selective_scan tests rc=$? $(grep 'test result' "$OUT/tests_scan.log")"
MAMBA_CUDA_SCAN_STAGE=0 timeout 60 $D/selective_scan --test-threads=8 > "$OUT/tests_scan_plain.log" 2>&1; echo "selective_scan tests, plain body, rc=$? $(grep 'test result' "$OUT/tests_scan_plain.log")"
timeout 90 $D/scan_bench --runs 15 2>&1 | grep -v back-to-back
echo "== again (the spread between runs)"
timeout 90 $D/scan_bench --runs 15 2>&1 | grep -v back-to-back | tail -9
echo "== plain body (MAMBA_CUDA_SCAN_STAGE=0)"
MAMBA_CUDA_SCAN_STAGE=0 timeout 90 $D/scan_bench --runs 15 2>&1 | grep -v back-to-back | tail -9
# Variants (NVRTC -D options), each after its own scan and prefill tests.
# mufu: every exponential on the MUFU (the default before v8).
for v in "mufu|-DSCAN_POLY_EVERY=0" ${EXTRA_VARIANTS:-}; do
    IFS='|' read -r label opts <<< "$v"
    echo "== scan variant $label [$opts]"
    export MAMBA_CUDA_NVRTC_OPTIONS="$opts"
    timeout 60 $D/selective_scan --test-threads=8 > "$OUT/tests_scan_$label.log" 2>&1; echo "selective_scan rc=$? $(grep 'test result' "$OUT/tests_scan_$label.log")"
    timeout 60 $D/cuda_prefill --test-threads=4 > "$OUT/tests_prefill_$label.log" 2>&1; echo "cuda_prefill rc=$? $(grep 'test result' "$OUT/tests_prefill_$label.log")"
    timeout 90 $D/scan_bench --runs 15 2>&1 | grep -v back-to-back | tail -9
    unset MAMBA_CUDA_NVRTC_OPTIONS
done

stamp "random 130m model, prefill bench"
timeout 60 $D/mamba-cli random-model --out /tmp/m130.gguf --type f16 > /dev/null 2>&1; ls -la /tmp/m130.gguf
timeout 120 $D/prefill_bench /tmp/m130.gguf --runs 20 --gemm bf16,f16,tf32 > "$OUT/prefill_bench.log" 2>&1
echo "prefill_bench rc=$?"; cat "$OUT/prefill_bench.log"

stamp "mamba-cli bench --backend cuda"
timeout 60 $D/mamba-cli bench --model /tmp/m130.gguf --prompt 2048 --gen 50 --backend cuda --gemm bf16 --reps 10 --json
timeout 60 $D/mamba-cli bench --model models/default-f32.gguf --prompt 512 --gen 50 --backend cuda --streams 1 --reps 3
stamp done
