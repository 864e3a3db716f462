#!/bin/bash
# A lean GPU-machine call for when little device time is left (~200 s): every
# GPU test binary at once (kernel compile, conv, scan, decode, cuda_decode,
# prefill, the C API's CUDA backend from Rust and from C), then the scan table
# (default, each VARIANTS entry, default again) and the bf16 prefill. From the
# repository root with stage_device.sh's executables in .device/ (the `run`
# tool, carry .device). VARIANTS: "label|options|env" words, a comma for a
# space: NVRTC options and NAME=VALUE environment settings for that variant.
set -u
source "$(dirname "$0")/device_env.sh"
# Every GPU test binary at once, as CI-like load: seven processes, each with
# several test threads, compiling into one kernel cache (COLD=1: a fresh,
# empty cache each round). STRESS=N repeats the round N more times.
all_tests() {
    [ "${COLD:-0}" = 1 ] && export MAMBA_CUDA_CACHE_DIR=/tmp/mamba-cuda-cache-$RANDOM$RANDOM
    stamp "all GPU tests, in parallel"
    pids=()
    for t in compile causal_conv1d selective_scan decode cuda_decode cuda_prefill cuda_backend; do
        timeout 200 $D/$t --test-threads=4 --nocapture > "$OUT/tests_$t.log" 2>&1 &
        pids+=($!)
    done
    for t in test_cuda_batch test_cuda; do
        timeout 60 $D/$t models/default-f32.gguf > "$OUT/tests_$t.log" 2>&1; echo "$t rc=$? $(tail -1 "$OUT/tests_$t.log")"
    done
    rcs=()
    for p in "${pids[@]}"; do wait "$p"; rcs+=($?); done
    i=0
    for t in compile causal_conv1d selective_scan decode cuda_decode cuda_prefill cuda_backend; do
        echo "$t rc=${rcs[$i]}: $(grep -E 'test result' "$OUT/tests_$t.log" | tail -1) $(grep -c panicked "$OUT/tests_$t.log") panics"
        i=$((i + 1))
    done
    for m in f32 bf16; do
        echo "worst $m prefill logits rel err: $(grep -E "^rel $m " "$OUT/tests_cuda_prefill.log" | grep -oE "logits [0-9.e-]+" | awk '{print $2}' | sort -g | tail -1)"
    done
}
for round in $(seq 0 ${STRESS:-0}); do all_tests; done
bench() { timeout 90 $D/scan_bench --runs 15 2>&1 | tail -16; }
stamp "scan_bench, default"
bench
for v in ${VARIANTS:-}; do
    IFS='|' read -r label opts envs <<< "$v"
    stamp "variant $label [${opts//,/ }] [${envs//,/ }]"
    (
        use_variant "$opts" "$envs"
        timeout 60 $D/selective_scan --test-threads=8 > "$OUT/tests_scan_$label.log" 2>&1; echo "selective_scan rc=$? $(grep 'test result' "$OUT/tests_scan_$label.log")"
        bench
    )
done
stamp "scan_bench, default again"
bench
stamp "prefill, bf16"
timeout 60 $D/mamba-cli random-model --out /tmp/m130.gguf --type f16 > /dev/null 2>&1
timeout 60 $D/prefill_bench /tmp/m130.gguf --runs 20 --gemm bf16 2>&1 | grep -E "^\| bf16"
timeout 60 $D/mamba-cli bench --model /tmp/m130.gguf --prompt 2048 --gen 50 --backend cuda --gemm bf16 --reps 10 --json
dmesg 2>/dev/null | grep -i segfault | tail -3
stamp done
(cd "$OUT" && tar czf logs.tgz *.log 2>/dev/null && rm -f *.log)
