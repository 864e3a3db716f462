#!/bin/bash
# Written in session 4, run in session 5 (results: mamba-cuda/NOTES.md, v6):
# one device call for the PDL / prefetch / cvt experiment, from the repository
# root with stage_device.sh's executables in .device/. Here:
#   bash mamba-cuda/tools/stage_device.sh
# then on the GPU machine (the `run` tool, carrying .device):
#   OUT=$OUT bash mamba-cuda/tools/device_scan_v6.sh
# It runs
#   1. the scan tests, then the prefill test (programmatic dependent launch on);
#   2. the scan benchmark with the split's second and third kernels launched
#      with PDL and without (MAMBA_CUDA_SCAN_PDL=0), in one call, so the ratio
#      is measured on the same machine state; then the prefetch variants
#      (NVRTC -D options, no rebuild), each after its own scan tests:
#      SCAN_PREFETCH_GROUP=1 (the chunk-state sweep loads the next 4 tokens'
#      inputs before running this group: the SASS shows the loads mid-group),
#      =2 (both sweeps; the output kernel spills more), =2 with 5 blocks an SM;
#      SCAN_CVT_BF16=1 (y rounded to bf16 by one cvt instead of the branchy
#      integer rounding: the output loop goes from 661 to 615 instructions per
#      4 tokens and its spills halve), alone and with SCAN_PREFETCH_GROUP=1;
#   3. Nsight Compute on the chunk-state and output kernels at bf16
#      (1, 1536, 2048): the warp-state and source counters, and the per-SASS-
#      instruction stall table as CSV (the ncu stall breakdown NOTES.md v4 asks
#      for) in $OUT/stalls_*.csv.
set -u
source "$(dirname "$0")/device_env.sh"
stamp "tests: selective_scan, cuda_prefill"
timeout 150 $D/selective_scan --test-threads=8 > "$OUT/tests_scan.log" 2>&1
echo "selective_scan rc=$?"; grep -E "test result|panicked" "$OUT/tests_scan.log"
timeout 150 $D/cuda_prefill --test-threads=4 > "$OUT/tests_prefill.log" 2>&1
echo "cuda_prefill rc=$?"; grep -E "test result|panicked" "$OUT/tests_prefill.log"
for pdl in 1 0 1 0; do
    stamp "scan_bench, PDL $pdl"
    MAMBA_CUDA_SCAN_PDL=$pdl timeout 90 $D/scan_bench --runs 15 2>&1 | grep -v back-to-back | tail -9
done
for v in "pf1|-DSCAN_PREFETCH_GROUP=1" "pf2|-DSCAN_PREFETCH_GROUP=2" \
         "pf2b5|-DSCAN_PREFETCH_GROUP=2 -DSCAN_MIN_BLOCKS=5" "cvt|-DSCAN_CVT_BF16=1" \
         "pf1cvt|-DSCAN_PREFETCH_GROUP=1 -DSCAN_CVT_BF16=1"; do
    IFS='|' read -r label opts <<< "$v"
    export MAMBA_CUDA_NVRTC_OPTIONS="$opts"
    stamp "variant $label [$opts]"
    timeout 150 $D/selective_scan --test-threads=8 > "$OUT/tests_scan_$label.log" 2>&1
    echo "selective_scan rc=$?"; grep -E "test result|panicked" "$OUT/tests_scan_$label.log"
    timeout 90 $D/scan_bench --runs 15 2>&1 | grep -v back-to-back | tail -9
done
unset MAMBA_CUDA_NVRTC_OPTIONS
if [ -z "${SKIP_NCU:-}" ]; then
    for k in chunk_state output; do
        stamp "ncu scan_${k}_bf16_nt16"
        timeout 150 ncu --clock-control none -k regex:scan_${k}_bf16 --launch-skip 3 --launch-count 1 \
            --section WarpStateStats --section SourceCounters --section InstructionStats \
            --section SchedulerStats --section Occupancy -o "$OUT/ncu_$k" -f \
            $D/scan_bench --runs 3 --only 0 --bf16 > "$OUT/ncu_$k.log" 2>&1
        echo "ncu rc=$?"
        ncu -i "$OUT/ncu_$k.ncu-rep" --page details > "$OUT/ncu_$k.txt" 2>&1
        grep -E "Duration|Executed Instructions  |Issued Warp|No Eligible|Eligible Warps|Active Warps Per|Warp Cycles Per Issued|Stall" "$OUT/ncu_$k.txt" | sed -e 's/  */ /g' | head -20
        ncu -i "$OUT/ncu_$k.ncu-rep" --page source --csv --print-source sass > "$OUT/stalls_$k.csv" 2>&1
        echo "stalls_$k.csv: $(wc -l < "$OUT/stalls_$k.csv") lines"
    done
fi
