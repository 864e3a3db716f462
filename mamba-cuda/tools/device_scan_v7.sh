#!/bin/bash
# One device call for the staged scan body (NOTES.md v7), from the repository
# root with stage_device.sh's executables in .device/:
#   bash mamba-cuda/tools/stage_device.sh      (here)
#   OUT=$OUT bash mamba-cuda/tools/device_scan_v7.sh   (the `run` tool, carry .device)
# 1. the scan tests with the staged body (default) and without
#    (MAMBA_CUDA_SCAN_STAGE=0), then the prefill tests;
# 2. scan_bench staged / plain, alternated twice in the one call;
# 3. variants of the staged body (NVRTC -D options, each after its scan tests);
# 4. whole-model prefill, staged / plain;
# 5. ncu (stall table) of both staged kernels at bf16 (1, 1536, 2048).
set -u
source "$(dirname "$0")/device_env.sh"
tests() {  # label
    timeout 150 $D/selective_scan --test-threads=8 > "$OUT/tests_scan_$1.log" 2>&1
    echo "selective_scan [$1] rc=$?"; grep -E "test result|panicked" "$OUT/tests_scan_$1.log"
}
bench() { timeout 90 $D/scan_bench --runs 15 2>&1 | grep -v back-to-back | tail -9; }
stamp tests
[ -n "${SKIP_COMPILE:-}" ] || { timeout 120 $D/compile > "$OUT/tests_compile.log" 2>&1; echo "compile rc=$?"; grep -E "test result" "$OUT/tests_compile.log"; }
tests staged
MAMBA_CUDA_SCAN_STAGE=0 tests plain
timeout 150 $D/cuda_prefill --test-threads=4 > "$OUT/tests_prefill.log" 2>&1
echo "cuda_prefill rc=$?"; grep -E "test result|panicked" "$OUT/tests_prefill.log"
MAMBA_CUDA_SCAN_STAGE=0 timeout 150 $D/cuda_prefill --test-threads=4 > "$OUT/tests_prefill_plain.log" 2>&1
echo "cuda_prefill [plain] rc=$?"; grep -E "test result|panicked" "$OUT/tests_prefill_plain.log"
for st in ${STAGES:-1 0 1 0}; do
    stamp "scan_bench, MAMBA_CUDA_SCAN_STAGE=$st"
    MAMBA_CUDA_SCAN_STAGE=$st bench
done
for v in ${VARIANTS:-"b5|-DSCAN_MIN_BLOCKS=5" "ca64|-DCOMBINE_AHEAD=64"}; do
    IFS='|' read -r label opts <<< "$v"
    export MAMBA_CUDA_NVRTC_OPTIONS="$opts"
    stamp "variant $label [$opts]"
    tests "$label"
    if [ "$label" = plainpf1 ]; then MAMBA_CUDA_SCAN_STAGE=0 bench; else bench; fi
done
unset MAMBA_CUDA_NVRTC_OPTIONS
if [ -z "${SKIP_PREFILL:-}" ]; then
stamp prefill
timeout 60 $D/mamba-cli random-model --out /tmp/m130.gguf --type f16 > /dev/null 2>&1; ls -la /tmp/m130.gguf
for st in 1 0; do
    MAMBA_CUDA_SCAN_STAGE=$st timeout 120 $D/prefill_bench /tmp/m130.gguf --runs 20 --gemm bf16 > "$OUT/prefill_$st.log" 2>&1
    echo "prefill_bench STAGE=$st rc=$?"; grep -vi "warm\|^$" "$OUT/prefill_$st.log" | tail -8
done
fi
if [ -z "${SKIP_NCU:-}" ]; then
    for k in chunk_state output; do
        stamp "ncu scan_${k}_bf16_nt16 (staged)"
        timeout 100 ncu --clock-control none -k regex:scan_${k}_bf16 --launch-skip 3 --launch-count 1 \
            --section WarpStateStats --section SourceCounters --section InstructionStats \
            --section SchedulerStats --section Occupancy --section SpeedOfLight -o "$OUT/ncu_$k" -f \
            $D/scan_bench --runs 3 --only 0 --bf16 > "$OUT/ncu_$k.log" 2>&1
        echo "ncu rc=$?"
        ncu -i "$OUT/ncu_$k.ncu-rep" --page details > "$OUT/ncu_$k.txt" 2>&1
        grep -E "Duration|Executed Instructions  |Issued Warp|No Eligible|Eligible Warps|Active Warps Per|Warp Cycles Per Issued|Registers Per" "$OUT/ncu_$k.txt" | sed -e 's/  */ /g' | head -20
        ncu -i "$OUT/ncu_$k.ncu-rep" --page source --csv --print-source sass > "$OUT/stalls_$k.csv" 2>&1
        rm -f "$OUT/ncu_$k.ncu-rep"
    done
fi
# Few files come back: the logs in one archive.
(cd "$OUT" && tar czf logs.tgz *.log && rm -f *.log)
