#!/bin/bash
# Quick A/B of scan variants on a few rows of the table (no tests): each
# VARIANTS entry "label|nvrtc options|env|scan_bench args" (a comma for a space), the rows in
# ROWS (default 0 3: 1 x 1536 x 2048 and 8 x 1536 x 2048), bf16, twice each,
# alternating. From the repository root with stage_device.sh's executables in .device/.
set -u
source "$(dirname "$0")/device_env.sh"
for pass in 1 2; do
    for v in ${VARIANTS:-default||}; do
        IFS='|' read -r label opts envs args <<< "$v"
        (
            use_variant "$opts" "$envs"
            line="$label:"
            for r in ${ROWS:-0 3}; do
                ms=$(timeout 60 $D/scan_bench --runs ${RUNS:-30} --only $r --bf16 ${args//,/ } 2>&1 | grep -E "^ +[0-9]+ +[0-9]+ +[0-9]+ \|" | awk -F'|' '{print $3}' | awk '{print $1" ("$4"x)"}')
                line="$line row$r $ms"
            done
            echo "$line"
        )
    done
done
