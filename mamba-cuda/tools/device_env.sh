# Sourced by the device scripts (device_v9.sh, device_decode.sh, device_final.sh,
# device_scan*.sh): $OUT made, .device/ as $D (unless set), GPU tests required,
# a kernel cache, the toolkit's libraries on the path, everything also logged
# to $OUT/log, and `stamp` for timed section headers.
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
D=${D:-.device}
export MAMBA_REQUIRE_GPU=1
export MAMBA_CUDA_CACHE_DIR=/tmp/mamba-cuda-cache
export LD_LIBRARY_PATH=/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}
exec > >(tee -a "$OUT/log") 2>&1
t0=$SECONDS
stamp() { echo "---- [$((SECONDS - t0))s] $*"; }
# Which GPU ran it: the same build has measured up to 12% apart on two H200
# machines (NOTES.md, v14), so every script that sources this prints it first.
gpu_line() {
    nvidia-smi --query-gpu=name,serial,pci.bus_id,driver_version,clocks.sm,clocks.max.sm,clocks.mem \
        --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
}
gpu_line
# Applies a VARIANTS entry's NVRTC options and NAME=VALUE settings (commas
# stand for spaces) to this shell: use_variant OPTIONS SETTINGS.
use_variant() {
    export MAMBA_CUDA_NVRTC_OPTIONS="${1//,/ }"
    local kv
    for kv in ${2//,/ }; do export "$kv"; done
}
# One row of scan_bench as one line (ROW, default 0; TYPE --bf16 or --f32,
# default --bf16; RUNS, default 25), extra arguments passed on: scan_row [--chunk N].
scan_row() {
    timeout 60 $D/scan_bench --runs ${RUNS:-25} --only ${ROW:-0} ${TYPE:---bf16} "$@" 2>&1 |
        grep -A1 -E "^ +[0-9]+ +[0-9]+ +[0-9]+ \|" | tr -s ' ' | tr '\n' ' '
}
