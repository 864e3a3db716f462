#!/usr/bin/env bash
# Compiles every CUDA kernel with NVIDIA's own NVRTC, no GPU needed: CUDA 12.6's
# for compute_72 (Jetson Xavier), compute_87 (Orin) and compute_90 (H200), and
# CUDA 13.0's for compute_87 and compute_90 (it no longer targets compute_72).
# NVRTC comes from NVIDIA's pip wheels, installed into .ci-cache/ (git-ignored);
# MAMBA_REQUIRE_GPU=1 makes the test fail, not skip, if NVRTC does not load.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cache=.ci-cache/nvrtc
for v in "cu12|nvidia-cuda-nvrtc-cu12==12.6.85|nvidia/cuda_nvrtc/lib" \
         "cu13|nvidia-cuda-nvrtc==13.0.88|nvidia/cu13/lib"; do
    IFS='|' read -r name pkg lib <<< "$v"
    dir="$cache/$name"
    if [ ! -e "$dir/$lib" ]; then
        echo "installing $pkg into $dir"
        python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" "$pkg" \
            || python3 -m pip install --quiet --disable-pip-version-check --no-deps --break-system-packages --target "$dir" "$pkg"
    fi
    ls "$dir/$lib"/libnvrtc.so.* > /dev/null
    echo "== NVRTC $name ($pkg)"
    LD_LIBRARY_PATH="$root/$dir/$lib" MAMBA_REQUIRE_GPU=1 MAMBA_CUDA_CACHE_DIR="$root/$cache/kernel-cache-$name" \
        cargo test --locked -p mamba-cuda --test compile -- --nocapture 2>&1 \
        | grep -E "compute_|test result|panicked|error" | cut -c1-160
    [ "${PIPESTATUS[0]}" -eq 0 ]
done
