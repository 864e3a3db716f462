#!/bin/bash
# Session 8, A/B rounds: scan tests (fused and three-kernel paths), the prefill
# accuracy, quick rows for VARIANTS (device_quick.sh format) and timelines of
# TL variants (device_timeline.sh format).
set -u
source "$(dirname "$0")/device_env.sh"
stamp "scan tests"
timeout 120 $D/selective_scan --test-threads=8 > "$OUT/tests_scan_fused.log" 2>&1; echo "fused rc=$? $(grep 'test result' "$OUT/tests_scan_fused.log")"
MAMBA_CUDA_SCAN_FUSED=0 timeout 120 $D/selective_scan --test-threads=8 > "$OUT/tests_scan_split3.log" 2>&1; echo "split3 rc=$? $(grep 'test result' "$OUT/tests_scan_split3.log")"
timeout 200 $D/cuda_prefill --test-threads=4 --nocapture > "$OUT/tests_prefill.log" 2>&1; echo "prefill rc=$? $(grep 'test result' "$OUT/tests_prefill.log")"
for m in f32 bf16; do
    echo "worst $m prefill logits rel err: $(grep -E "^rel $m " "$OUT/tests_prefill.log" | grep -oE "logits [0-9.e-]+" | awk '{print $2}' | sort -g | tail -1)"
done
stamp "quick rows"
VARIANTS="$VARIANTS" ROWS="${ROWS:-0 1 2 3 4}" bash "$(dirname "$0")/device_quick.sh" 2>&1 | grep -v "^----"
stamp "timelines"
VARIANTS="$TL" bash "$(dirname "$0")/device_timeline.sh" 2>&1 | grep -v "^----"
stamp done
(cd "$OUT" && tar czf logs.tgz *.log 2>/dev/null && rm -f *.log)
