#!/bin/bash
# The exp unit's throughput on the GPU machine, alone and mixed with K
# independent FMAs per exp (tools/micro/mufu.cu, built there with nvcc), at
# 4, 8 and 20 warps an SM: the practical ceiling for the scan sweeps'
# instruction mix (NOTES.md, v15). From the repository root.
set -u
source "$(dirname "$0")/device_env.sh"
export PATH=/usr/local/cuda/bin:$PATH
nvcc -O3 -arch=sm_90 "$(dirname "$0")/micro/mufu.cu" -o /tmp/mufu && /tmp/mufu
