#!/bin/bash
# A/B of kernel build variants at one row of the scan table, alternating
# (ROUNDS times) so drift hits every variant alike: VARIANTS entries
# "label|nvrtc-options|ENV=..." (commas for spaces), the first usually
# "base||". ROW (default 0), TYPE (--bf16 or --f32, default --bf16), RUNS.
# From the repository root with stage_device.sh's executables in .device/.
set -u
source "$(dirname "$0")/device_env.sh"
for r in $(seq 1 ${ROUNDS:-3}); do
    for v in $VARIANTS; do
        IFS='|' read -r label opts envs <<< "$v"
        line=$(use_variant "$opts" "$envs"; scan_row)
        echo "round $r $label: $line"
    done
done
