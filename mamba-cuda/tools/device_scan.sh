#!/bin/bash
# Selective-scan investigation on the GPU machine (the `run` tool), from the
# repository root, with stage_device.sh's executables in .device/: the scan
# tests and benchmark for each kernel variant (NVRTC -D options), Nsight
# Compute per-kernel durations and instruction counts at two bf16 shapes, and
# the SASS of the output kernel. Results in $OUT (summary.txt, *.log, sass_*.txt).
# Usage: bash mamba-cuda/tools/device_scan.sh "label|-D options[|max states per thread[|extra scan_bench args]]" ...
set -u
source "$(dirname "$0")/device_env.sh"
summary=$OUT/summary.txt
say() { echo "$*" | tee -a "$summary"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee -a "$summary"
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=("base|")
[ -n "${SKIP_SCAN:-}" ] && variants=()
for v in "${variants[@]}"; do
    IFS='|' read -r label opts maxnt bargs <<< "$v"
    export MAMBA_CUDA_SCAN_MAX_NT=${maxnt:-16}
    t0=$SECONDS
    [ -z "${SKIP_TESTS:-}" ] && timeout 150 env MAMBA_CUDA_NVRTC_OPTIONS="$opts" $D/selective_scan --test-threads=8 > /tmp/t.log 2>&1
    rc=$?
    echo "===== $label [$opts]" >> "$OUT/tests.log"; cat /tmp/t.log >> "$OUT/tests.log"
    say "== $label [$opts] tests rc=$rc $(grep -E '^test result' /tmp/t.log | tr '\n' ' ') $((SECONDS - t0))s"
    grep -E "panicked|FAILED" /tmp/t.log | head -4 | tee -a "$summary"
    timeout 150 env MAMBA_CUDA_NVRTC_OPTIONS="$opts" $D/scan_bench --runs ${RUNS:-15} ${bargs:-} > /tmp/b.log 2>&1
    echo "===== $label [$opts]" >> "$OUT/bench.log"; cat /tmp/b.log >> "$OUT/bench.log"
    tail -16 /tmp/b.log | tee -a "$summary"
    nvcc -arch=sm_90 -cubin -Xptxas -v $opts -o /tmp/ss.cubin mamba-cuda/kernels/selective_scan.cu > /tmp/p.log 2>&1
    say "ptxas: $(grep -E 'Compiling entry|Used|spill' /tmp/p.log | sed -e 's/ptxas info *: //' | grep -A2 -E "scan_(output|chunk_state)_bf16_nt16'" | grep -oE "scan_[a-z_]+bf16_nt16|Used [0-9]+ registers|[0-9]+ bytes spill stores" | tr '\n' ' ')"
    cuobjdump -sass -fun scan_output_bf16_nt16 /tmp/ss.cubin > "$OUT/sass_$label.txt" 2>&1
done
if [ -n "${NCU:-}" ]; then
    for only in 0 2; do
        timeout 150 ncu --clock-control none -k regex:scan_ --launch-skip 9 --launch-count 3 \
            --section SpeedOfLight --section InstructionStats --section Occupancy --section WarpStateStats \
            $D/scan_bench --runs 3 --only $only --bf16 > /tmp/n.log 2>&1
        echo "===== ncu shape $only" >> "$OUT/ncu.log"; cat /tmp/n.log >> "$OUT/ncu.log"
        say "ncu shape $only rc=$?:"
        grep -E "^  scan_|Duration|Executed Instructions  |Issue Slots Busy|Achieved Occupancy|Registers|==ERR" /tmp/n.log | sed -e 's/  */ /g' | head -30 | tee -a "$summary"
    done
fi
unset MAMBA_CUDA_SCAN_MAX_NT
echo "==== summary"; cat "$summary"
