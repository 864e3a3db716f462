#!/usr/bin/env bash
# Generate include/mamba.h from mamba-ffi with cbindgen.
#   scripts/gen-header.sh           write include/mamba.h
#   scripts/gen-header.sh --check   regenerate into a temp file; fail on any difference
# The cbindgen version is pinned: a different version may format the header
# differently. It is installed with `cargo install --locked` when missing.
set -euo pipefail
CBINDGEN_VERSION=0.29.2
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! command -v cbindgen >/dev/null 2>&1 ||
    [ "$(cbindgen --version 2>/dev/null | awk '{print $2}')" != "$CBINDGEN_VERSION" ]; then
    echo "gen-header: installing cbindgen $CBINDGEN_VERSION" >&2
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked >&2
fi

gen() {
    cbindgen --quiet --config mamba-ffi/cbindgen.toml --crate mamba-ffi --output "$1" mamba-ffi
}

if [ "${1:-}" = "--check" ]; then
    tmp="$(mktemp)"
    trap 'rm -f "$tmp"' EXIT
    gen "$tmp"
    if ! diff -u include/mamba.h "$tmp"; then
        echo "gen-header: include/mamba.h is out of date; run scripts/gen-header.sh" >&2
        exit 1
    fi
    echo "gen-header: include/mamba.h is up to date"
else
    gen include/mamba.h
    echo "gen-header: wrote include/mamba.h"
fi
