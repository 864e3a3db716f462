#!/bin/bash
# Phase 2 on the GPU machine (the `run` tool), from the repository root, with
# the executables of stage_device.sh carried in .device/: the whole-model
# prefill tests (tests/cuda_prefill.rs), a CLI check (logits --backend cuda
# against the CPU), then the prefill benchmark on a random 130m-shaped f16
# model. Everything goes to $OUT/log (tests.log and bench.log hold the rest).
# Each step has its own time limit, so one that hangs leaves time for the next.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
D=.device
export MAMBA_REQUIRE_GPU=1
export MAMBA_CUDA_CACHE_DIR=/tmp/mamba-cuda-cache
exec > >(tee -a "$OUT/log") 2>&1
t0=$SECONDS
stamp() { echo "---- [$((SECONDS - t0))s] $*"; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
stamp no_gpu
timeout 30 $D/no_gpu --nocapture 2>&1 | grep -E "GPU|test result"

stamp cuda_prefill
timeout ${TEST_S:-110} $D/cuda_prefill --nocapture --test-threads=4 > "$OUT/tests.log" 2>&1
echo "cuda_prefill rc=$?"
if grep -q "libcublas not found" "$OUT/tests.log"; then
    echo "cuBLAS not found by the loader; retrying with LD_LIBRARY_PATH"
    export LD_LIBRARY_PATH=/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
    timeout 80 $D/cuda_prefill --nocapture --test-threads=4 >> "$OUT/tests.log" 2>&1
    echo "cuda_prefill (LD_LIBRARY_PATH) rc=$?"
fi
grep -E "^rel |panicked|^test |test result|skipping|error" "$OUT/tests.log" | head -80

stamp cli
toks=5,60,81,208,4,159,177,42,113,200,40,229
M=tests/fixtures/conformance/base
timeout 20 $D/mamba-cli logits --model $M --tokens $toks --out /tmp/cpu.bin --mode step
for g in f32 bf16; do
    timeout 30 $D/mamba-cli logits --model $M --tokens $toks --out /tmp/gpu_$g.bin --mode prefill --backend cuda --gemm $g
    python3 -c "
import numpy as np, sys
a = np.fromfile('/tmp/cpu.bin', '<f4'); b = np.fromfile('/tmp/gpu_$g.bin', '<f4')
print('cli $g: n', a.size, b.size, 'rel max err', float(np.abs(a - b).max() / np.abs(a).max()))
" 2>&1
done

stamp random-model
timeout 60 $D/mamba-cli random-model --out /tmp/m130.gguf --type f16 && ls -la /tmp/m130.gguf

stamp bench
timeout ${BENCH_S:-100} $D/prefill_bench /tmp/m130.gguf --runs ${RUNS:-20} --gemm ${GEMMS:-bf16,f16,tf32} > "$OUT/bench.log" 2>&1
echo "bench rc=$?"
cat "$OUT/bench.log"
stamp done
