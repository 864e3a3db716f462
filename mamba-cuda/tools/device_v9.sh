#!/bin/bash
# Decode (session 3, v9/v10) on the GPU machine (the `run` tool), from the
# repository root, with the executables of stage_device.sh in .device/:
# ptxas register use of the GEMV and SSM kernels (sm_90); the decode benchmark
# (batches 1, 64, 256, every weight type, graphs on, median of STEPS=100
# steps; QUICK=1 skips this first run) and a second run at 1 and 256; the
# CLI (`mamba-cli bench --backend cuda --streams 1/64/256`, f16 and q8_0);
# AB=1: an A/B run with MAMBA_DECODE_GEMV1=0; then the C API's CUDA tests
# (Rust, then the C programs) and the decode tests; ALL=1: also the other GPU
# tests (kernel compile, scan, conv, no-GPU probe, prefill). Logs to $OUT
# (8 files at most come back).
set -u
source "$(dirname "$0")/device_env.sh"
K=mamba-cuda/kernels
stamp ptxas
for f in decode_gemv decode_ssm; do
    cat $K/decode_common.cuh $K/$f.cu > /tmp/$f.cu
    nvcc -arch=sm_90 -std=c++17 -Xptxas -v -c /tmp/$f.cu -o /tmp/$f.o > /tmp/ptxas_$f.log 2>&1
    awk '/Compiling entry function/{f=$7} /Used [0-9]+ registers/{if (f ~ /(gemv1?|ssm)_(f16|q8_0)/) printf "%s %s regs; ", f, $5} /spill/{if (f ~ /(gemv1?|ssm)_(f16|q8_0)/ && ($5 != 0 || $9 != 0)) printf "%s SPILL %s %s; ", f, $5, $9}' /tmp/ptxas_$f.log | tr -d "'" | head -20
done
timeout 60 $D/mamba-cli random-model --out /tmp/m130.gguf --type f16 > /dev/null 2>&1; ls -la /tmp/m130.gguf
bench() {  # name, env..., args
    local name=$1; shift
    stamp "bench $name: $*"
    env "$@" > /tmp/bench_$name.log 2>&1
    echo "rc=$?"; grep -vE "^DECODE" /tmp/bench_$name.log | cut -c1-400
    cat /tmp/bench_$name.log >> "$OUT/bench.log"
}
B="timeout ${BENCH_S:-120} $D/decode_bench /tmp/m130.gguf"
[ -z "${QUICK:-}" ] && bench main $B --steps ${STEPS:-100} --batches 1,64,256 --weights f16,q8_0,q4_0,bf16 --graphs on
bench again $B --steps ${STEPS:-100} --batches 1,256 --weights q8_0,f16,q4_0,bf16 --graphs on
stamp "mamba-cli bench --backend cuda --streams"
for w in f16 q8_0; do
    for st in 1 64 256; do
        timeout 60 $D/mamba-cli bench --model /tmp/m130.gguf --prompt 512 --gen 100 --backend cuda --streams $st --weights $w --reps 3 --json 2>/dev/null | tail -1 | cut -c1-400
    done
done
[ -n "${AB:-}" ] && bench nogemv1 MAMBA_DECODE_GEMV1=0 $B --steps 50 --batches 1 --weights f16,q8_0 --graphs on
stamp "tests: C API"
timeout 200 $D/cuda_backend --nocapture --test-threads=4 > "$OUT/tests_ffi.log" 2>&1
echo "cuda_backend rc=$?"
grep -E "panicked|FAILED|test result|skipping|signal|fault" "$OUT/tests_ffi.log" | cut -c1-300 | head -20
tail -5 "$OUT/tests_ffi.log"
for t in test_cuda_batch test_cuda; do
    timeout 60 $D/$t models/default-f32.gguf > /tmp/c.log 2>&1
    echo "$t rc=$?"; tail -4 /tmp/c.log
done
stamp "tests: decode"
timeout ${TEST_S:-200} $D/decode --nocapture --test-threads=8 > "$OUT/tests_decode.log" 2>&1 &
p1=$!
timeout ${TEST_S:-200} $D/cuda_decode --nocapture --test-threads=8 > "$OUT/tests_cuda_decode.log" 2>&1
echo "cuda_decode tests rc=$?"
wait $p1; echo "decode tests rc=$?"
for f in "$OUT"/tests_decode.log "$OUT"/tests_cuda_decode.log; do
    echo "== $f"
    grep -E "^rel |panicked|^test .*FAILED|test result|skipping|error|device is" "$f" | cut -c1-300 | head -60
done
stamp done
if [ -n "${ALL:-}" ]; then
    # The other GPU tests (prefill, scan, conv, kernel compile, no-GPU probe).
    stamp "tests: the rest"
    timeout 60 $D/compile --nocapture 2>&1 | grep -E "compute_|panicked|test result" | cut -c1-200
    for t in selective_scan causal_conv1d no_gpu; do
        timeout 120 $D/$t --test-threads=8 > /tmp/t.log 2>&1; echo "$t rc=$? $(grep 'test result' /tmp/t.log)"
    done
    timeout 200 $D/cuda_prefill --nocapture --test-threads=4 > /tmp/t.log 2>&1
    echo "cuda_prefill rc=$?"; grep -E "^rel |panicked|FAILED|test result" /tmp/t.log | cut -c1-200 | head -20
    stamp done
fi
