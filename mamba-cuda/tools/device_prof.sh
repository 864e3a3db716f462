#!/bin/bash
# Where the time of one split scan goes (bf16, 1 x 1536 x 2048, the shape
# still short of 1.5x): the kernels' timeline from Nsight Systems (when the
# machine has it: with programmatic launch the three kernels overlap), then
# Nsight Compute on each kernel (duration, issue and pipe use, warp states,
# stall reasons) and the per-SASS-instruction stall table as CSV for the two
# sweeps ($OUT/stalls_*.csv). From the repository root with stage_device.sh's
# executables in .device/.
set -u
source "$(dirname "$0")/device_env.sh"
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems*/bin/nsys 2>/dev/null | head -1)
if [ -n "$NSYS" ]; then
    stamp "nsys timeline ($NSYS)"
    timeout 120 $NSYS profile --trace=cuda -o "$OUT/tl" -f true $D/scan_bench --runs 5 --only 0 --bf16 > "$OUT/nsys.log" 2>&1
    echo "nsys rc=$?"
    timeout 60 $NSYS stats --report cuda_gpu_trace --format csv -o "$OUT/tl" "$OUT/tl.nsys-rep" > /dev/null 2>&1
    ls "$OUT"/tl* 2>/dev/null
    f=$(ls "$OUT"/tl*gpu_trace*.csv 2>/dev/null | head -1)
    [ -n "$f" ] && grep -E "scan_" "$f" | tail -9 | cut -c1-200
else
    echo "no nsys here"
fi
M=sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_issued.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,gpu__time_duration.sum,sm__cycles_active.avg,smsp__cycles_active.avg,sm__inst_executed.sum,gpc__cycles_elapsed.max
for k in chunk_state combine output; do
    stamp "ncu scan_$k"
    timeout 150 ncu --clock-control none -k regex:scan_$k --launch-skip 3 --launch-count 1 \
        --section WarpStateStats --section SourceCounters --section SchedulerStats --section Occupancy \
        --metrics $M -o "$OUT/ncu_$k" -f $D/scan_bench --runs 3 --only 0 --bf16 > "$OUT/ncu_$k.log" 2>&1
    echo "ncu rc=$?"
    ncu -i "$OUT/ncu_$k.ncu-rep" --page raw --csv --metrics $M > "$OUT/raw_$k.csv" 2>&1
    python3 - "$OUT/raw_$k.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
h = rows[0]; v = rows[-1]
for i, name in enumerate(h):
    if any(m in name for m in ("pipe_", "inst_issued", "warps_active", "time_duration", "cycles_active", "inst_executed.sum", "elapsed")):
        print(f"  {name} = {v[i]}")
PY
    ncu -i "$OUT/ncu_$k.ncu-rep" --page details > "$OUT/ncu_$k.txt" 2>&1
    grep -E "Kernel Name|Function Name|Duration|Issued Warp|No Eligible|Eligible Warps|Active Warps Per|Warp Cycles Per Issued|Achieved Occ|Theoretical Occ" "$OUT/ncu_$k.txt" | sed -e 's/  */ /g' | head -14
    if [ $k != combine ]; then
        ncu -i "$OUT/ncu_$k.ncu-rep" --page source --csv --print-source sass > "$OUT/stalls_$k.csv" 2>&1
        echo "stalls_$k.csv: $(wc -l < "$OUT/stalls_$k.csv") lines"
    fi
done
stamp done
