#!/bin/bash
# Session 8, the chunk-0 wait fix: scan tests (Auto, and one launch wherever
# it fits), prefill accuracy, and the bf16 rows that use the one launch.
set -u
source "$(dirname "$0")/device_env.sh"
timeout 120 $D/selective_scan --test-threads=8 > "$OUT/tests_scan.log" 2>&1; echo "scan rc=$? $(grep 'test result' "$OUT/tests_scan.log")"
MAMBA_CUDA_SCAN_FUSED=1 timeout 120 $D/selective_scan --test-threads=8 > "$OUT/tests_scan_f1.log" 2>&1; echo "scan fused=1 rc=$? $(grep 'test result' "$OUT/tests_scan_f1.log")"
timeout 120 $D/cuda_prefill --test-threads=4 --nocapture > "$OUT/tests_prefill.log" 2>&1; echo "prefill rc=$? $(grep 'test result' "$OUT/tests_prefill.log")"
grep -E "^rel bf16 " "$OUT/tests_prefill.log" | grep -oE "logits [0-9.e-]+" | sort -k2 -g | tail -1
for r in 0 1 2 4; do timeout 60 $D/scan_bench --runs 15 --only $r --bf16 2>&1 | grep -E "^ +[0-9]+ +[0-9]+ +[0-9]+ \|"; done
(cd "$OUT" && tar czf logs.tgz *.log 2>/dev/null && rm -f *.log)
