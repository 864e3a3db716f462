#!/bin/bash
# Phase 3 on the GPU machine (the `run` tool), from the repository root, with
# the executables of stage_device.sh carried in .device/: the kernel compile
# test, the decode tests (mamba-cuda/tests/decode.rs on the shipped models,
# tests/cuda_decode.rs on the conformance models, both at once), then the
# decode benchmark on a random 130m-shaped f16 model. Env: TEST_S, BENCH_S,
# STEPS, BATCHES, WEIGHTS, GRAPHS (on,off), EXTRA*, PDL_AB (bench args for a
# second run with MAMBA_DECODE_PDL=0), SPLIT_AB (bench args for runs with
# the split SSM forced on, MAMBA_DECODE_SSM_SPLIT=1, and off), SPLIT_TESTS=1
# (the decode tests again with the split SSM forced on, concurrently; v5),
# NO_SIMPLE=1 (no -DDECODE_SIMPLE rerun after a failure), BENCH_FIRST=1
# (v6: the model, the bench and the A/B runs before the tests, so a slow or
# stuck test cannot cost the numbers), AB_S (seconds per A/B run, 60),
# NVRTC_AB (v6: ';'-separated MAMBA_CUDA_NVRTC_OPTIONS sets, each a bench run
# of NVRTC_AB_ARGS after the tests: kernel variants by -D, same binary).
# Everything goes to
# $OUT/log; the full test output to $OUT/tests_*.log, the bench to $OUT/bench.log.
set -u
source "$(dirname "$0")/device_env.sh"

stamp compile
timeout 60 $D/compile --nocapture 2>&1 | grep -E "compute_|panicked|error|test result" | cut -c1-300

run_bench() {
    stamp bench
    timeout ${BENCH_S:-120} $D/decode_bench /tmp/m130.gguf --steps ${STEPS:-50} --batches ${BATCHES:-1,64,256} \
        --weights ${WEIGHTS:-f16,q8_0,bf16,q4_0} --graphs ${GRAPHS:-on,off} > "$OUT/bench.log" 2>&1
    echo "bench rc=$?"
    grep -vE "^DECODE" "$OUT/bench.log"
    grep -oE "weights=[a-z0-9_]+ batch=[0-9]+ .*note=.*" "$OUT/bench.log" | grep -v 'note=""' | head -5
    n=2
    for extra in "${EXTRA:-}" "${EXTRA2:-}" "${EXTRA3:-}"; do
        [ -n "$extra" ] || continue
        stamp "bench extra: $extra"
        timeout ${AB_S:-60} $D/decode_bench /tmp/m130.gguf --steps 30 $extra > "$OUT/bench$n.log" 2>&1
        echo "bench$n rc=$?"; grep -vE "^DECODE" "$OUT/bench$n.log"
        n=$((n + 1))
    done
    if [ -n "${PDL_AB:-}" ]; then
        # The same without programmatic dependent launch (A/B of the v4 launch).
        stamp "bench with MAMBA_DECODE_PDL=0: $PDL_AB"
        MAMBA_DECODE_PDL=0 timeout ${AB_S:-60} $D/decode_bench /tmp/m130.gguf --steps 30 $PDL_AB > "$OUT/bench_nopdl.log" 2>&1
        echo "bench_nopdl rc=$?"; grep -vE "^DECODE" "$OUT/bench_nopdl.log"
    fi
    if [ -n "${SPLIT_AB:-}" ]; then
        # v5 A/B: the split SSM (prep + state stream) at every batch size, and never.
        for v in 1 1000000; do
            stamp "bench with MAMBA_DECODE_SSM_SPLIT=$v: $SPLIT_AB"
            MAMBA_DECODE_SSM_SPLIT=$v timeout ${AB_S:-60} $D/decode_bench /tmp/m130.gguf --steps 30 $SPLIT_AB > "$OUT/bench_split$v.log" 2>&1
            echo "bench_split$v rc=$?"; grep -vE "^DECODE" "$OUT/bench_split$v.log"
        done
    fi
}

if [ -n "${BENCH_FIRST:-}" ]; then
    timeout 60 $D/mamba-cli random-model --out /tmp/m130.gguf --type f16 > /dev/null 2>&1 && ls -la /tmp/m130.gguf
    run_bench
fi
stamp tests
timeout ${TEST_S:-150} $D/decode --nocapture --test-threads=8 > "$OUT/tests_decode.log" 2>&1 &
p1=$!
timeout ${TEST_S:-150} $D/cuda_decode --nocapture --test-threads=8 > "$OUT/tests_cuda_decode.log" 2>&1 &
p2=$!
if [ -n "${SPLIT_TESTS:-}" ]; then
    MAMBA_DECODE_SSM_SPLIT=1 timeout ${TEST_S:-150} $D/decode --nocapture --test-threads=4 \
        shipped_models stream_results slot_save continuous > "$OUT/tests_split.log" 2>&1 &
    p3=$!
    MAMBA_DECODE_SSM_SPLIT=1 timeout ${TEST_S:-150} $D/cuda_decode --nocapture --test-threads=4 \
        conformance_models_match prefill_then > "$OUT/tests_split2.log" 2>&1 &
    p4=$!
fi
[ -f /tmp/m130.gguf ] || { timeout 60 $D/mamba-cli random-model --out /tmp/m130.gguf --type f16 > /dev/null 2>&1 && ls -la /tmp/m130.gguf; }
wait $p1; rc1=$?; echo "decode tests rc=$rc1"
wait $p2; rc2=$?; echo "cuda_decode tests rc=$rc2"
for f in "$OUT"/tests_decode.log "$OUT"/tests_cuda_decode.log; do
    grep -E "^rel |panicked|^test .*FAILED|test result|skipping|error|device is" "$f" | cut -c1-400 | head -70
done
if [ -n "${SPLIT_TESTS:-}" ]; then
    wait $p3; echo "decode tests (split SSM forced) rc=$?"
    wait $p4; echo "cuda_decode tests (split SSM forced) rc=$?"
    grep -hE "^rel |panicked|^test .*FAILED|test result" "$OUT"/tests_split.log "$OUT"/tests_split2.log | cut -c1-300 | head -40
fi
if [ -z "${NO_SIMPLE:-}" ] && { [ $rc1 != 0 ] || [ $rc2 != 0 ]; }; then
    # The plain-loop kernel variant, to tell a fast-path bug from the rest.
    stamp "tests again with -DDECODE_SIMPLE"
    export MAMBA_CUDA_NVRTC_OPTIONS=-DDECODE_SIMPLE
    timeout ${TEST_S:-150} $D/decode --nocapture --test-threads=8 > "$OUT/tests_simple.log" 2>&1 &
    p1=$!
    timeout ${TEST_S:-150} $D/cuda_decode --nocapture --test-threads=8 >> "$OUT/tests_simple2.log" 2>&1
    echo "cuda_decode (simple) rc=$?"; wait $p1; echo "decode (simple) rc=$?"
    grep -hE "panicked|test result" "$OUT"/tests_simple*.log | head -20
    [ -n "${KEEP_SIMPLE:-}" ] || unset MAMBA_CUDA_NVRTC_OPTIONS
fi

if [ -z "${BENCH_FIRST:-}" ]; then run_bench; fi
if [ -n "${NVRTC_AB:-}" ]; then
    n=0
    IFS=';' read -ra sets <<< "$NVRTC_AB"
    for o in "${sets[@]}"; do
        stamp "bench with MAMBA_CUDA_NVRTC_OPTIONS='$o': ${NVRTC_AB_ARGS:-}"
        MAMBA_CUDA_NVRTC_OPTIONS="$o" timeout ${AB_S:-60} $D/decode_bench /tmp/m130.gguf --steps 30 ${NVRTC_AB_ARGS:-} > "$OUT/bench_nvrtc$n.log" 2>&1
        echo "bench_nvrtc$n rc=$?"; grep -vE "^DECODE" "$OUT/bench_nvrtc$n.log"
        n=$((n + 1))
    done
fi
stamp done
