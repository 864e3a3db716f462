#!/bin/bash
# Session 8: the single-launch split (scan_fused_*). Scan tests with the fused
# path (default) and with MAMBA_CUDA_SCAN_FUSED=0 (three kernels), the prefill
# accuracy test, the scan table both ways (alternating), a phase timeline of
# each at 1 x 1536 x 2048 bf16, and quick rows for EXTRA variants
# ("label|opts|env|bench args" as in device_quick.sh). From the repository
# root with stage_device.sh's executables in .device/.
set -u
source "$(dirname "$0")/device_env.sh"
stamp "scan tests: fused, three kernels; prefill accuracy"
timeout 120 $D/selective_scan --test-threads=8 > "$OUT/tests_scan_fused.log" 2>&1; echo "fused rc=$? $(grep 'test result' "$OUT/tests_scan_fused.log")"
MAMBA_CUDA_SCAN_FUSED=0 timeout 120 $D/selective_scan --test-threads=8 > "$OUT/tests_scan_split3.log" 2>&1; echo "split3 rc=$? $(grep 'test result' "$OUT/tests_scan_split3.log")"
timeout 200 $D/cuda_prefill --test-threads=4 --nocapture > "$OUT/tests_cuda_prefill.log" 2>&1; echo "cuda_prefill rc=$? $(grep 'test result' "$OUT/tests_cuda_prefill.log")"
for m in f32 bf16; do
    echo "worst $m prefill logits rel err: $(grep -E "^rel $m " "$OUT/tests_cuda_prefill.log" | grep -oE "logits [0-9.e-]+" | awk '{print $2}' | sort -g | tail -1)"
done
bench() { timeout 60 $D/scan_bench --runs 15 2>&1 | grep -v back-to-back | tail -9; }
for pass in 1 2; do
    stamp "scan_bench fused (pass $pass)"; bench
    stamp "scan_bench three kernels (pass $pass)"; MAMBA_CUDA_SCAN_FUSED=0 bench
done
stamp "timelines"
VARIANTS="fused|| split3||MAMBA_CUDA_SCAN_FUSED=0" bash "$(dirname "$0")/device_timeline.sh" 2>&1 | grep -v "^----"
if [ -n "${EXTRA:-}" ]; then
    stamp "quick variants"
    VARIANTS="$EXTRA" ROWS="${ROWS:-0 1 3 4}" bash "$(dirname "$0")/device_quick.sh" 2>&1 | grep -v "^----"
fi
stamp done
(cd "$OUT" && tar czf logs.tgz *.log 2>/dev/null && rm -f *.log)
