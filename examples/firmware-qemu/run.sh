#!/usr/bin/env bash
# Build the firmware (release) and run it under QEMU's mps2-an386 (Cortex-M4F).
#
#   examples/firmware-qemu/run.sh
# stdout: only the generated text (then one newline, as `mamba-cli generate --no-echo`);
# stderr: the build, the firmware's stats line and any error. The exit status is the
# firmware's: 0 when it generated everything.
# Installs what it needs: the rustup target and Debian's qemu-system-arm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
if ! command -v qemu-system-arm >/dev/null 2>&1; then
    echo "installing qemu-system-arm" >&2
    sudo_if_needed apt-get update -qq >&2
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends qemu-system-arm >&2
fi
if command -v rustup >/dev/null 2>&1; then
    rustup target add thumbv7em-none-eabihf >&2
fi

# The target comes from .cargo/config.toml; the target dir is set here too, over any
# CARGO_TARGET_DIR, so that size.sh finds the image.
target_dir="$here/../../target/firmware-qemu"
cargo build --release --locked --target-dir "$target_dir" >&2
elf="$target_dir/thumbv7em-none-eabihf/release/mamba-firmware-qemu"

# The whole run takes seconds; the timeout only guards against a firmware that never exits.
exec timeout 600 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
    -semihosting-config enable=on,target=native -kernel "$elf"
