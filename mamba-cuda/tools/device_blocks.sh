#!/bin/bash
# Per-block timeline (which SM, when each block of each sweep started and ended) of the
# fused and three-kernel split at 1 x 1536 x 2048 bf16, into $OUT/blocks.tgz.
set -u
source "$(dirname "$0")/device_env.sh"
for v in "fused|" "split3|MAMBA_CUDA_SCAN_FUSED=0"; do
  IFS='|' read -r label envs <<< "$v"
  ( use_variant "-DSCAN_TIMELINE=1" "$envs"
    export MAMBA_CUDA_SCAN_TIMELINE=1 MAMBA_CUDA_SCAN_BLOCKLOG=$OUT/blocks_$label.txt
    echo "== $label"; timeout 60 $D/scan_bench --runs 5 --only 0 --bf16 2>&1 | grep timeline | tail -1 | sed 's/timeline µs://' )
done
nvidia-smi -q | grep -i -A3 "clocks\b" | head; 
cd $OUT && tar czf blocks.tgz blocks_*.txt && rm blocks_*.txt
