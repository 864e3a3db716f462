#!/bin/bash
# A/B of kernel build variants at one row of the scan table, alternating
# (ROUNDS times) so drift hits every variant alike: VARIANTS entries
# "label|nvrtc-options|ENV=..." (commas for spaces), the first usually
# "base||". ROW (default 0), TYPE (--bf16 or --f32, default --bf16), RUNS.
# From the repository root with stage_device.sh's executables in .device/.
# The rounds are device_variants.sh's, with its tests left out.
TESTS="" ROWS="${ROW:-0}" TYPES="${TYPE:---bf16}" exec bash "$(dirname "$0")/device_variants.sh"
