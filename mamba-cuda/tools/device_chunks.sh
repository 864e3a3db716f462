#!/bin/bash
# The scan's chunk count at one row (--chunk overrides the planner's one-wave
# choice), alternating ROUNDS times: CHUNKS="34 38 40 ..." (tokens a chunk),
# ROW (default 0), TYPE (--bf16 or --f32, default --bf16). From the
# repository root with stage_device.sh's executables in .device/.
set -u
source "$(dirname "$0")/device_env.sh"
for r in $(seq 1 ${ROUNDS:-2}); do
    for ch in planner ${CHUNKS:-34 38 40 43 47 52}; do
        arg=""; [ "$ch" != planner ] && arg="--chunk $ch"
        line=$(timeout 60 $D/scan_bench --runs ${RUNS:-25} --only ${ROW:-0} ${TYPE:---bf16} $arg 2>&1 | grep -A1 -E "^ +[0-9]+ +[0-9]+ +[0-9]+ \|" | tr -s ' ' | tr '\n' ' ')
        echo "round $r chunk $ch: $line"
    done
done
