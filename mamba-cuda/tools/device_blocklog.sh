#!/bin/bash
# Per-SM view of the split scan at one shape (bf16, 1 x 1536 x 2048 unless
# ROW / TYPE say otherwise; ARGS: more scan_bench arguments, e.g.
# "--chunk 19"): kernels built with -DSCAN_TIMELINE=1, every block's SM and
# start / end logged (MAMBA_CUDA_SCAN_BLOCKLOG), summarised by
# blocklog_summary.py for the last two calls; the raw log in
# $OUT/blocklog_LABEL.txt. From the repository root with stage_device.sh's
# executables in .device/.
# VARIANTS as in device_quick.sh ("label|NVRTC options|NAME=VALUE,...").
set -u
source "$(dirname "$0")/device_env.sh"
here=$(dirname "$0")
for v in ${VARIANTS:-default||}; do
  IFS='|' read -r label opts envs <<< "$v"
  ( use_variant "-DSCAN_TIMELINE=1,$opts" "$envs"
    export MAMBA_CUDA_SCAN_TIMELINE=1 MAMBA_CUDA_SCAN_BLOCKLOG="$OUT/blocklog_$label.txt"
    stamp "$label"
    timeout 60 $D/scan_bench --runs 5 --only ${ROW:-0} ${TYPE:---bf16} ${ARGS:-} 2>&1 | grep timeline | tail -1
    python3 "$here/blocklog_summary.py" "$MAMBA_CUDA_SCAN_BLOCKLOG" -1
    python3 "$here/blocklog_summary.py" "$MAMBA_CUDA_SCAN_BLOCKLOG" -2 | head -30 )
done
