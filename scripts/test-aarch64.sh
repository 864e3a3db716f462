#!/usr/bin/env bash
# aarch64 (the Jetson CPU) without the hardware: cross-compile for
# aarch64-unknown-linux-gnu and run, under qemu-aarch64 user-mode emulation and with the
# NEON kernel path forced (MAMBA_KERNELS=neon),
#   - mamba-core's tests,
#   - the conformance tests (tests/conformance.rs: mamba-cli against transformers'
#     references) and the CPU kernel tests (tests/cpu_kernels.rs).
# Installs what it needs: the rustup target, Debian's gcc-aarch64-linux-gnu (the linker)
# and qemu-user (qemu-aarch64).
#
#   scripts/test-aarch64.sh
# Environment: MAMBA_AARCH64_TARGET_DIR (default target/aarch64) keeps the cross build
# apart from the host's, so CI can cache both.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

triple=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if command -v rustup >/dev/null 2>&1; then
    rustup target add "$triple"
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $sysroot"
export CARGO_TARGET_DIR="${MAMBA_AARCH64_TARGET_DIR:-$root/target/aarch64}"
# The kernel path every CpuKernels (mamba-cli included) takes: an error if unusable.
export MAMBA_KERNELS=neon

echo "== mamba-core tests (aarch64, qemu-aarch64)"
cargo test --locked --target "$triple" -p mamba-core

echo "== conformance and CPU kernel tests (aarch64, qemu-aarch64, MAMBA_KERNELS=neon)"
tests=(--test conformance --test cpu_kernels --test cpu_quant_conformance)
build_log="$(mktemp)"
trap 'rm -f "$build_log"' EXIT
cargo test --locked --target "$triple" -p mamba-rt "${tests[@]}" --no-run 2>&1 | tee "$build_log"
# The tests spawn mamba-cli, an aarch64 program the host kernel runs only where
# binfmt_misc hands it to QEMU (not in most containers). So, for the run, mamba-cli is a
# shell script that starts the real one under qemu-aarch64; the real one is put back after.
cli="$CARGO_TARGET_DIR/$triple/debug/mamba-cli"
mv "$cli" "$cli.aarch64"
trap 'mv -f "$cli.aarch64" "$cli"; rm -f "$build_log"' EXIT
printf '#!/bin/sh\nexec qemu-aarch64 -L %s "$0.aarch64" "$@"\n' "$sysroot" > "$cli"
chmod +x "$cli"
mapfile -t exes < <(sed -n 's/^ *Executable .*(\(.*\))$/\1/p' "$build_log")
if [ ${#exes[@]} -ne $((${#tests[@]} / 2)) ]; then
    echo "expected $((${#tests[@]} / 2)) test programs in cargo's output, found ${#exes[@]}" >&2
    exit 1
fi
status=0
for exe in "${exes[@]}"; do
    echo "-- $exe"
    qemu-aarch64 -L "$sysroot" "$exe" || status=1
done
# The dotprod path (sdot, Jetson Orin's Cortex-A78AE has it; qemu-aarch64's default CPU
# too): the conformance and quantized-conformance tests again with it forced. cpu_kernels above already checks it
# against the scalar kernels (it runs every path the CPU has).
for exe in "${exes[@]}"; do
    case "$exe" in *conformance*)
        echo "-- $exe (MAMBA_KERNELS=neon-dot)"
        MAMBA_KERNELS=neon-dot qemu-aarch64 -L "$sysroot" "$exe" || status=1 ;;
    esac
done
exit "$status"
