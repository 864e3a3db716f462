#!/bin/bash
# Session 7 (NOTES.md, v9): the scan tests (default, then without programmatic
# launch), the phase timeline of the split at 1 x 1536 x 2048 bf16, and quick
# A/B rows, for VARIANTS ("label|nvrtc options|env", a comma for a space).
set -u
source "$(dirname "$0")/device_env.sh"
stamp "selective_scan tests"
timeout 120 $D/selective_scan --test-threads=8 > "$OUT/t1.log" 2>&1; echo "default rc=$? $(grep 'test result' "$OUT/t1.log")"
grep -E "panicked|error" "$OUT/t1.log" | head -5
for env in MAMBA_CUDA_SCAN_PDL=0 ${TEST_ENVS:-}; do
    env "$env" timeout 120 $D/selective_scan --test-threads=8 > "$OUT/t2.log" 2>&1; echo "$env rc=$? $(grep 'test result' "$OUT/t2.log")"
    grep -E "panicked" "$OUT/t2.log" | head -3
done
stamp "timeline"
VARIANTS="${TL_VARIANTS:-default||}" bash "$(dirname "$0")/device_timeline.sh" 2>&1 | grep -v "^---- "
stamp "quick rows"
bash "$(dirname "$0")/device_quick.sh" 2>&1 | grep -v "^---- \|NVIDIA"
stamp done
