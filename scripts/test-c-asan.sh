#!/usr/bin/env bash
# The C tests (tests/c/*.c) and the C examples built with AddressSanitizer and
# UndefinedBehaviorSanitizer (-fsanitize=address,undefined), linked against the
# release libmamba.so, and run with leak detection on: any memory error, undefined
# behaviour or leak fails the run. The valgrind variant is scripts/test-c.sh.
#
#   scripts/test-c-asan.sh
# Environment: CC (default gcc), CARGO_TARGET_DIR, MAMBA_SKIP_BUILD=1 (use the built
# library), STRESS_SECONDS (default 3) for tests/c/stress_threads.c.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cc="${CC:-gcc}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
bin="$tmp/bin"
mkdir -p "$bin"
passed=0
failed=0
failures=()
run() {
    local name="$1"
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "PASS: $name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "FAIL: $name"
    fi
}

echo "== build and install the release library"
scripts/install-c.sh "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
mflags="$(pkg-config --cflags mamba)"
mlibs="$(pkg-config --libs mamba) -Wl,-rpath,$prefix/lib"
cargo build --release --locked -p mamba-ffi --example make_test_model
mk="${CARGO_TARGET_DIR:-$root/target}/release/examples/make_test_model"
"$mk" "$tmp/a.gguf" --seed 1 >/dev/null
"$mk" "$tmp/b.gguf" --seed 2 >/dev/null

echo "== compile with -fsanitize=address,undefined"
san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cflags="-std=c99 -pedantic -Wall -Wextra -Werror -O1 -g $san"
tests=(test_header test_bad_args test_threads test_state stress_threads)
for t in "${tests[@]}"; do
    [ -f "tests/c/$t.c" ] || continue
    # shellcheck disable=SC2086
    run "compile $t" "$cc" $cflags $mflags "tests/c/$t.c" -o "$bin/$t" $mlibs -lpthread
done
# The examples, through their Makefiles, with the sanitizer flags added.
for ex in examples/c; do
    [ -f "$ex/Makefile" ] || continue
    cp -r "$ex" "$tmp/ex"
    run "make $ex (sanitized)" make -s -C "$tmp/ex" PREFIX="$prefix" \
        CFLAGS="-std=c99 -Wall -Wextra -Werror -O1 -g $san" LDFLAGS="$san"
done

echo "== run"
# detect_leaks: LeakSanitizer at exit; the Rust library's own allocations are seen
# through the intercepted malloc, so a leaked model or session is reported too.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:strict_init_order=1:check_initialization_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd "$tmp"
for t in "${tests[@]}"; do
    [ -x "$bin/$t" ] || continue
    case "$t" in
    test_header) run "asan $t" "$bin/$t" ;;
    test_bad_args) run "asan $t" "$bin/$t" a.gguf b.gguf ;;
    stress_threads) run "asan $t" "$bin/$t" a.gguf "${STRESS_SECONDS:-3}" ;;
    *) run "asan $t" "$bin/$t" a.gguf ;;
    esac
done
if [ -x "$tmp/ex/generate" ]; then
    run "asan generate" bash -c '"$1" a.gguf "Hi" 16 >/dev/null' _ "$tmp/ex/generate"
fi
if [ -x "$tmp/ex/stream_embeddings" ]; then
    run "asan stream_embeddings" "$tmp/ex/stream_embeddings" a.gguf 16
fi

echo
if [ "$failed" -ne 0 ]; then
    printf 'failed: %s\n' "${failures[@]}"
fi
echo "c-asan: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
