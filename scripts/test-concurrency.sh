#!/usr/bin/env bash
# Concurrency stress of the C API (tests/c/stress_threads.c): 16 threads creating,
# using and freeing sessions on shared models, models freed while their sessions run
# on other threads. Three runs:
#   1. native, STRESS_SECONDS (default 10) long: every result checked bit for bit;
#   2. ThreadSanitizer (needs nightly + rust-src): libmamba built with
#      -Zsanitizer=thread -Zbuild-std (std instrumented too, so its locks and atomics
#      are understood), the C program with -fsanitize=thread; any report fails;
#   3. valgrind's DRD, only when ThreadSanitizer is unavailable: the pool's lock-free
#      hand-off (atomics) is invisible to valgrind's tools, so their reports on it
#      are not trusted; it then runs as an information-only check (MAMBA_DRD_STRICT=1
#      makes it fail the run).
#
#   scripts/test-concurrency.sh
# Environment: STRESS_SECONDS, TSAN_SECONDS (default 20), CARGO_TARGET_DIR, CC.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cc="${CC:-gcc}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
target="${CARGO_TARGET_DIR:-$root/target}"
status=0

echo "== release library and a test model"
scripts/install-c.sh "$tmp/prefix" >/dev/null
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
cargo build --release --locked -p mamba-ffi --example make_test_model
"$target/release/examples/make_test_model" "$tmp/a.gguf" --seed 1 >/dev/null
mflags="$(pkg-config --cflags mamba)"
cflags="-std=c99 -pedantic -Wall -Wextra -Werror -O1 -g"

echo "== 1. native, ${STRESS_SECONDS:-10}s"
# shellcheck disable=SC2086
"$cc" $cflags $mflags tests/c/stress_threads.c -o "$tmp/stress" \
    $(pkg-config --libs mamba) -Wl,-rpath,"$tmp/prefix/lib" -lpthread
if "$tmp/stress" "$tmp/a.gguf" "${STRESS_SECONDS:-10}"; then echo "PASS: native"; else
    echo "FAIL: native"
    status=1
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
if rustup run nightly rustc --version >/dev/null 2>&1 &&
    { rustup +nightly component list --installed 2>/dev/null | grep -q '^rust-src' ||
        rustup +nightly component add rust-src >/dev/null 2>&1; }; then
    echo "== 2. ThreadSanitizer, ${TSAN_SECONDS:-20}s"
    tsan_target="$target/tsan"
    RUSTFLAGS="-Zsanitizer=thread" cargo +nightly build -Zbuild-std --target "$host" \
        --release -p mamba-ffi --target-dir "$tsan_target"
    lib="$tmp/tsan-lib"
    mkdir -p "$lib"
    cp "$tsan_target/$host/release/libmamba.so" "$lib/libmamba.so.0"
    ln -sf libmamba.so.0 "$lib/libmamba.so"
    # The C side carries the TSan runtime (the compiler's libtsan); libmamba.so's
    # instrumentation calls into it. Rust's LLVM also emits __tsan_memcpy/memmove/
    # memset, which older runtimes (GCC 12's) lack: forward them to the intercepted
    # libc functions, exported from the program so the library binds to them.
    cat >"$tmp/tsan_shim.c" <<'SHIM'
#include <string.h>
void *__tsan_memcpy(void *d, const void *s, size_t n) { return memcpy(d, s, n); }
void *__tsan_memmove(void *d, const void *s, size_t n) { return memmove(d, s, n); }
void *__tsan_memset(void *d, int c, size_t n) { return memset(d, c, n); }
SHIM
    shim="$tmp/tsan_shim.c"
    if echo 'int main(void){return 0;}' | "$cc" -x c -fsanitize=thread - -o "$tmp/probe" \
        -Wl,--defsym=probe_=__tsan_memcpy 2>/dev/null; then
        shim="" # the runtime has them
    fi
    # shellcheck disable=SC2086
    "$cc" $cflags -fsanitize=thread $mflags tests/c/stress_threads.c $shim -o "$tmp/stress_tsan" \
        -rdynamic -L"$lib" -lmamba -Wl,-rpath,"$lib" -lpthread
    if TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1" \
        "$tmp/stress_tsan" "$tmp/a.gguf" "${TSAN_SECONDS:-20}"; then
        echo "PASS: ThreadSanitizer (no reports)"
    else
        echo "FAIL: ThreadSanitizer"
        status=1
    fi
elif command -v valgrind >/dev/null 2>&1; then
    echo "== 3. valgrind DRD (no nightly for ThreadSanitizer)"
    if valgrind -q --tool=drd --error-exitcode=1 "$tmp/stress" "$tmp/a.gguf" 5 2; then
        echo "PASS: drd"
    elif [ "${MAMBA_DRD_STRICT:-0}" = 1 ]; then
        echo "FAIL: drd"
        status=1
    else
        echo "NOTE: drd reported (information only: it does not model atomics)"
    fi
else
    echo "SKIPPED: no nightly (ThreadSanitizer) and no valgrind"
fi
[ "$status" -eq 0 ] && echo "concurrency: all runs clean"
exit "$status"
