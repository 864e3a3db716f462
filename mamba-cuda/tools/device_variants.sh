#!/bin/bash
# One device call for kernel build options: the scan tests under each
# VARIANTS entry ("label|nvrtc-options|ENV=..." words, commas for spaces;
# TESTS, if set, lists the entries to test instead, "" for none),
# then alternating A/B rounds of scan_bench rows (ROWS, default "0 3";
# ROUNDS, default 3; TYPES, default --bf16, or "--bf16 --f32"). From the repository root with
# stage_device.sh's executables in .device/.
: "${VARIANTS:?VARIANTS: label|nvrtc-options|ENV=... words}"
set -u
source "$(dirname "$0")/device_env.sh"
for v in ${TESTS-$VARIANTS}; do
    IFS='|' read -r label opts envs <<< "$v"
    stamp "tests, variant $label [${opts//,/ }] [${envs//,/ }]"
    (
        use_variant "$opts" "$envs"
        timeout 120 $D/selective_scan --test-threads=8 > "$OUT/tests_scan_$label.log" 2>&1
        echo "selective_scan rc=$? $(grep 'test result' "$OUT/tests_scan_$label.log")"
    )
done
for ty in ${TYPES:---bf16}; do
    for row in ${ROWS:-0 3}; do
        stamp "row $row $ty"
        for r in $(seq 1 ${ROUNDS:-3}); do
            for v in $VARIANTS; do
                IFS='|' read -r label opts envs <<< "$v"
                line=$(use_variant "$opts" "$envs"; ROW=$row TYPE=$ty scan_row)
                # B E L; f32 ms, GB/s, x; bf16 ms, GB/s, x; from idle and back to back
                # (f32, bf16); the path each took.
                echo "round $r $label: $(echo "$line" | awk '{gsub(/;/, ""); print $1, $2, $3, "f32", $5, $6, $8, "bf16", $10, $11, $13, "idle", $18, $20, "b2b", $26, $28, "path", $(NF - 2), $NF}')"
            done
        done
    done
done
stamp done
(cd "$OUT" && tar czf logs.tgz *.log 2>/dev/null && rm -f *.log)
