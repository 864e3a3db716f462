#!/bin/bash
# Exploration for scan v8 (NOTES.md), no tests: at bf16 (1, 1536, 2048), the
# time against the chunk length and an nsys timeline of one call's kernels;
# then the scan table for exp2-on-FMA mixes. From the repository root with
# stage_device.sh's executables in .device/ (the `run` tool, carry .device).
# VARIANTS: "label|options" words; a comma in options stands for a space.
set -u
source "$(dirname "$0")/device_env.sh"
bench() { timeout 90 $D/scan_bench --runs 15 2>&1 | grep -v back-to-back | tail -9; }
# (Run when the default was the MUFU alone, -DSCAN_POLY_EVERY=0 now.)
for opts in "-DSCAN_POLY_EVERY=0" "-DSCAN_POLY_EVERY_CS=8 -DSCAN_POLY_EVERY_OUT=8"; do
    export MAMBA_CUDA_NVRTC_OPTIONS="$opts"
    stamp "chunk sweep at bf16 (1, 1536, 2048) [$opts]"
    for c in 16 24 32 40 48 64 128; do
        printf "chunk %4d: " $c; timeout 30 $D/scan_bench --runs 25 --only 0 --bf16 --chunk $c 2>&1 | grep -E "^ +1 +1536" | awk '{print $10, $13}'
    done
done
unset MAMBA_CUDA_NVRTC_OPTIONS
if command -v nsys > /dev/null; then
    stamp "nsys, bf16 (1, 1536, 2048), default"
    timeout 120 nsys profile -o "$OUT/tl" --force-overwrite true $D/scan_bench --runs 5 --only 0 --bf16 > /dev/null 2>&1
    timeout 60 nsys stats --report cuda_gpu_trace --format csv "$OUT/tl.nsys-rep" 2>/dev/null | grep -E "scan_" | tail -12 \
        | awk -F, '{gsub(/"/,""); printf "%s start %s dur %s\n", $NF, $1, $2}' | sed -e 's/(.*)//' | cut -c1-120
    rm -f "$OUT"/tl.*
else
    echo "no nsys"
fi
for v in ${VARIANTS:-"pcs8o8|-DSCAN_POLY_EVERY_CS=8,-DSCAN_POLY_EVERY_OUT=8" "pcs8o16|-DSCAN_POLY_EVERY_CS=8,-DSCAN_POLY_EVERY_OUT=16" "pcs16o8|-DSCAN_POLY_EVERY_CS=16,-DSCAN_POLY_EVERY_OUT=8" "pcs4o8|-DSCAN_POLY_EVERY_CS=4,-DSCAN_POLY_EVERY_OUT=8" "pcs8o4|-DSCAN_POLY_EVERY_CS=8,-DSCAN_POLY_EVERY_OUT=4"}; do
    IFS='|' read -r label opts <<< "$v"
    export MAMBA_CUDA_NVRTC_OPTIONS="${opts//,/ }"
    stamp "variant $label [$MAMBA_CUDA_NVRTC_OPTIONS]"
    bench
done
unset MAMBA_CUDA_NVRTC_OPTIONS
stamp "default"
bench
stamp done
