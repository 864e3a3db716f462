#!/bin/bash
# Runs on the GPU machine (the `run` tool), from the repository root, with the
# test and bench executables built elsewhere and carried in .device/ (see
# stage_device.sh). At most 8 files come back, so logs are few: tests.log,
# sanitize.log, ptxas.log, bench.log, ncu.log, summary.txt.
# Usage: bash mamba-cuda/tools/device_run.sh [tests] [sanitize] [ptxas] [bench] [variants] [ncu]
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
D=.device
export MAMBA_REQUIRE_GPU=1
export MAMBA_CUDA_CACHE_DIR=/tmp/mamba-cuda-cache
steps="${*:-tests sanitize ptxas bench}"
summary=$OUT/summary.txt
: > "$summary"
say() { echo "$*" | tee -a "$summary"; }
worst() {  # file prefix field1 field2: largest values of two "name value" fields on lines starting with prefix
    grep -E "^$2 " "$1" | awk -v a="$3" -v b="$4" '{for(i=1;i<NF;i++){if($i==a)x=$(i+1); if($i==b)y=$(i+1)}; if(x+0>mx)mx=x+0; if(y+0>my)my=y+0} END{print mx, my}'
}

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader | tee -a "$summary"

if $D/no_gpu --nocapture > "$OUT/tests.log" 2>&1; then
    say "no_gpu test without LD_LIBRARY_PATH: ok ($(grep -o 'GPU: .*' "$OUT/tests.log"))"
else
    say "no_gpu test without LD_LIBRARY_PATH: FAILED; retrying with it"
    export LD_LIBRARY_PATH=/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
    $D/no_gpu --nocapture >> "$OUT/tests.log" 2>&1 && say "  ok with LD_LIBRARY_PATH"
fi

run_test() {  # label, env..., binary, args
    local label=$1; shift
    local t0=$SECONDS
    echo "===== $label" >> "$OUT/tests.log"
    timeout 240 env "$@" --nocapture > /tmp/t.log 2>&1
    local rc=$?
    cat /tmp/t.log >> "$OUT/tests.log"
    say "test $label: rc=$rc $(grep -E '^test result' /tmp/t.log | tr '\n' ' ') $((SECONDS - t0))s"
    grep -E "panicked|FAILED|failed|err " /tmp/t.log | grep -v "^test result" | head -6 | tee -a "$summary"
    for k in f32 bf16; do
        grep -qE "^$k " /tmp/t.log && say "  $k worst: scan y/state $(worst /tmp/t.log $k y state), conv out/window $(worst /tmp/t.log $k out window)"
    done
}

if [[ $steps == *tests* ]]; then
    run_test compile $D/compile
    run_test selective_scan $D/selective_scan --test-threads=8
    run_test causal_conv1d $D/causal_conv1d --test-threads=8
fi
if [[ $steps == *variants* ]]; then
    run_test "selective_scan PREFETCH+POLY4" MAMBA_CUDA_NVRTC_OPTIONS="-DSCAN_PREFETCH=1 -DSCAN_POLY_EVERY=4" $D/selective_scan --test-threads=8
fi

if [[ $steps == *sanitize* ]]; then
    for t in "selective_scan two_calls" "selective_scan strided"; do
        set -- $t
        timeout 120 compute-sanitizer --tool memcheck --print-limit 5 $D/$1 $2 >> "$OUT/sanitize.log" 2>&1
        say "memcheck $1 $2: rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/sanitize.log" | tail -1)"
    done
    timeout 120 compute-sanitizer --tool racecheck --print-limit 5 $D/selective_scan strided >> "$OUT/sanitize.log" 2>&1
    say "racecheck selective_scan strided: rc=$? $(grep -E 'RACECHECK SUMMARY' "$OUT/sanitize.log" | tail -1)"
fi

if [[ $steps == *ptxas* ]]; then
    for defs in "" "-DSCAN_PREFETCH=1"; do
        echo "===== [$defs]" >> "$OUT/ptxas.log"
        nvcc -arch=sm_90 -Xptxas -v $defs -c mamba-cuda/kernels/selective_scan.cu -o /tmp/ss.o >> "$OUT/ptxas.log" 2>&1
        say "ptxas sm_90 [$defs]: $(awk '/Compiling entry function/{f=$6} /Used [0-9]+ registers/{if (f ~ /(f32|bf16)_nt16|combine/) printf "%s %s regs; ", f, $5}' "$OUT/ptxas.log" | tail -c 600)"
        grep -E "spill" "$OUT/ptxas.log" | grep -v " 0 bytes spill stores, 0 bytes spill loads" | head -3 | tee -a "$summary"
    done
fi

bench() {  # label, env assignments / command
    local label=$1; shift
    echo "===== bench $label" >> "$OUT/bench.log"
    timeout 200 env "$@" > /tmp/b.log 2>&1
    cat /tmp/b.log >> "$OUT/bench.log"
    say "== bench: $label"; tail -10 /tmp/b.log | tee -a "$summary"
}
if [[ $steps == *bench* ]]; then
    bench default $D/scan_bench --runs 30
fi
if [[ $steps == *variants* ]]; then
    bench prefetch MAMBA_CUDA_NVRTC_OPTIONS="-DSCAN_PREFETCH=1" $D/scan_bench --runs 20
    bench poly4 MAMBA_CUDA_NVRTC_OPTIONS="-DSCAN_POLY_EVERY=4" $D/scan_bench --runs 20
    bench poly2 MAMBA_CUDA_NVRTC_OPTIONS="-DSCAN_POLY_EVERY=2" $D/scan_bench --runs 20
    bench prefetch_poly4 MAMBA_CUDA_NVRTC_OPTIONS="-DSCAN_PREFETCH=1 -DSCAN_POLY_EVERY=4" $D/scan_bench --runs 20
fi
if [[ $steps == *sweep* ]]; then
    # Candidate kernel variants: each one's scan tests, then its benchmark.
    # label|NVRTC options|MAMBA_CUDA_SCAN_MAX_NT
    for v in "base||16" "mb5|-DSCAN_MIN_BLOCKS=5|16" "mb6|-DSCAN_MIN_BLOCKS=6|16" \
             "pf_mb5|-DSCAN_PREFETCH=1 -DSCAN_MIN_BLOCKS=5|16" "pf_mb6|-DSCAN_PREFETCH=1 -DSCAN_MIN_BLOCKS=6|16"; do
        IFS='|' read -r label opts maxnt <<< "$v"
        run_test "scan $label" MAMBA_CUDA_NVRTC_OPTIONS="$opts" MAMBA_CUDA_SCAN_MAX_NT=$maxnt $D/selective_scan --test-threads=8
        bench "$label" MAMBA_CUDA_NVRTC_OPTIONS="$opts" MAMBA_CUDA_SCAN_MAX_NT=$maxnt $D/scan_bench --runs 15
    done
    # One state per lane (G = 16) and no split: the alternative to chunking for few channels.
    bench nt1_nosplit MAMBA_CUDA_SCAN_MAX_NT=1 $D/scan_bench --runs 10 --chunk 100000000
    for defs in "-DSCAN_MIN_BLOCKS=5" "-DSCAN_MIN_BLOCKS=6" "-DSCAN_PREFETCH=1 -DSCAN_MIN_BLOCKS=6"; do
        nvcc -arch=sm_90 -Xptxas -v $defs -c mamba-cuda/kernels/selective_scan.cu -o /tmp/ss.o > /tmp/p.log 2>&1
        echo "===== [$defs]" >> "$OUT/ptxas.log"; cat /tmp/p.log >> "$OUT/ptxas.log"
        say "ptxas [$defs]: $(grep -E 'Compiling entry|Used|spill' /tmp/p.log | sed -e 's/ptxas info *: //' | grep -A2 -E "scan_output_(f32|bf16)_nt(16|8)'" | grep -oE "scan_output_[a-z0-9_]+|Used [0-9]+ registers|[0-9]+ bytes spill stores" | tr '\n' ' ')"
    done
fi

if [[ $steps == *ncu* ]]; then
    for v in ""; do
        echo "===== ncu [$v]" >> "$OUT/ncu.log"
        timeout 120 env MAMBA_CUDA_NVRTC_OPTIONS="$v" ncu --clock-control none -k regex:scan_output --launch-skip 2 --launch-count 1 \
            --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section ComputeWorkloadAnalysis --section SchedulerStats \
            $D/scan_bench --runs 3 --only 6 --f32 > /tmp/n.log 2>&1
        timeout 90 env MAMBA_CUDA_NVRTC_OPTIONS="$v" ncu --clock-control none -k regex:scan_output --launch-skip 2 --launch-count 1 \
            --metrics sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.pct_of_peak_sustained_active,regex:smsp__average_warps_issue_stalled_.*_per_issue_active.ratio \
            $D/scan_bench --runs 3 --only 6 --f32 >> /tmp/n.log 2>&1
        cat /tmp/n.log >> "$OUT/ncu.log"
        say "ncu [$v] rc=$?:"
        grep -E "Duration|Registers Per|Achieved Occupancy|Theoretical Occupancy|Issue Slots Busy|SM Busy|Memory Throughput|Compute \(SM\)|pipe_xu|pipe_fma|issue_active|Warp Cycles Per Issued|Block Limit Reg|SM Frequency|Eligible Warps|No Eligible|==ERR|==PROF" /tmp/n.log | sed -e 's/  */ /g' | head -20 | tee -a "$summary"
        grep -E "issue_stalled" /tmp/n.log | sed -e 's/  */ /g' | sort -k3 -g -r | awk '$NF+0 > 0.3' | head -8 | tee -a "$summary"
    done
fi
echo "==== summary"; cat "$summary"
