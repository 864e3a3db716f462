#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine with rustup:
# Rust components and targets, and the Debian packages for the C, edge and
# sanitizer tests. Safe to run again: it installs only what is missing.
set -euo pipefail

log() { printf '\n==> %s\n' "$*" >&2; }

log "Rust components and targets"
rustup component add rustfmt clippy >/dev/null
rustup target add thumbv7em-none-eabihf aarch64-unknown-linux-gnu >/dev/null
if rustup toolchain list | grep -q '^nightly'; then
  rustup component add --toolchain nightly miri rust-src >/dev/null 2>&1 || true
fi

# Debian packages: C toolchain pieces, valgrind, QEMU (Cortex-M system and aarch64
# user mode), the aarch64 cross linker and libc.
pkgs=()
need() { dpkg -s "$1" >/dev/null 2>&1 || pkgs+=("$1"); }
for p in gcc g++ make pkg-config cmake valgrind qemu-system-arm qemu-user \
         gcc-aarch64-linux-gnu libc6-dev-arm64-cross python3; do
  need "$p"
done
if ((${#pkgs[@]})); then
  log "apt-get install ${pkgs[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
log "setup done"
