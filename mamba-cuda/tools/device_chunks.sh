#!/bin/bash
# The scan's chunk count at one row (--chunk overrides the planner's one-wave
# choice), alternating ROUNDS times: CHUNKS="34 38 40 ..." (tokens a chunk),
# ROW (default 0), TYPE (--bf16 or --f32, default --bf16). From the
# repository root with stage_device.sh's executables in .device/.
set -u
source "$(dirname "$0")/device_env.sh"
for r in $(seq 1 ${ROUNDS:-2}); do
    for ch in planner ${CHUNKS:-34 38 40 43 47 52}; do
        if [ "$ch" = planner ]; then line=$(scan_row); else line=$(scan_row --chunk "$ch"); fi
        echo "round $r chunk $ch: $line"
    done
done
