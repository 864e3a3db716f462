#!/bin/bash
# When each phase of a split scan starts and ends in a real (PDL-overlapped) run:
# kernels built with -DSCAN_TIMELINE=1, MAMBA_CUDA_SCAN_TIMELINE=1 (bf16, 1 x 1536 x 2048).
# VARIANTS as in device_quick.sh.
set -u
source "$(dirname "$0")/device_env.sh"
for v in ${VARIANTS:-default||}; do
  IFS='|' read -r label opts envs <<< "$v"
  ( use_variant "-DSCAN_TIMELINE=1,$opts" "$envs"
    export MAMBA_CUDA_SCAN_TIMELINE=1
    echo "== $label"; timeout 60 $D/scan_bench --runs 5 --only 0 --bf16 2>&1 | grep timeline | tail -2 | sed 's/timeline µs://' | tr '|' '\n' | paste -sd'|' )
done
