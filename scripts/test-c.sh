#!/usr/bin/env bash
# The C ABI's end-to-end test: header check, release build, install into a temp
# prefix, C/C++ tests and examples built with -Wall -Wextra -Werror against the
# installed header and library (pkg-config), run natively and under valgrind
# (error exit code, full leak check), and the Python (ctypes) example.
#
#   scripts/test-c.sh            everything
# Environment: MAMBA_SKIP_HEADER_CHECK=1 skips `gen-header.sh --check` (it may
# install cbindgen); MAMBA_NO_VALGRIND=1 uses AddressSanitizer instead of valgrind.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
passed=0
failed=0
failures=()

step() { printf '\n== %s\n' "$*"; }
ok() {
    passed=$((passed + 1))
    echo "PASS: $1"
}
bad() {
    failed=$((failed + 1))
    failures+=("$1")
    echo "FAIL: $1"
}
# run NAME CMD...: a test that passes when CMD exits 0.
run() {
    local name="$1"
    shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}

CFLAGS_C="-std=c99 -pedantic -Wall -Wextra -Werror -O1 -g"
CFLAGS_CXX="-std=c++17 -pedantic -Wall -Wextra -Werror -O1 -g"

if [ "${MAMBA_SKIP_HEADER_CHECK:-0}" != 1 ]; then
    step "include/mamba.h matches the Rust source (cbindgen)"
    run "header up to date" scripts/gen-header.sh --check
fi

step "build and install the release library into $prefix"
scripts/install-c.sh "$prefix"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
run "pkg-config finds mamba" pkg-config --exists mamba
run "SONAME is libmamba.so.0" bash -c \
    "readelf -d '$prefix/lib/libmamba.so' | grep -q 'SONAME.*\[libmamba.so.0\]'"
run "only mamba_* symbols exported" bash -c \
    "! nm -D --defined-only '$prefix/lib/libmamba.so' | awk '{print \$3}' | grep -v '^mamba_'"
mflags="$(pkg-config --cflags mamba)"
mlibs="$(pkg-config --libs mamba) -Wl,-rpath,$prefix/lib"

step "test models (random weights, byte-level)"
cargo build --release --locked -p mamba-ffi --example make_test_model
mk="${CARGO_TARGET_DIR:-$root/target}/release/examples/make_test_model"
"$mk" "$tmp/a.gguf" --seed 1
"$mk" "$tmp/b.gguf" --seed 2

step "compile the header test (C99 and C++17, header included twice) and the C tests"
bin="$tmp/bin"
mkdir -p "$bin"
# shellcheck disable=SC2086
run "header as C99" gcc $CFLAGS_C $mflags tests/c/test_header.c -o "$bin/header_c" $mlibs
# shellcheck disable=SC2086
run "header as C++17" g++ -x c++ $CFLAGS_CXX $mflags tests/c/test_header.c -o "$bin/header_cxx" $mlibs
for t in test_bad_args test_threads test_state test_cuda test_cuda_batch; do
    # shellcheck disable=SC2086
    run "compile $t" gcc $CFLAGS_C $mflags "tests/c/$t.c" -o "$bin/$t" $mlibs -lpthread -lm
done
# The static library, with the system libraries pkg-config lists for it.
# shellcheck disable=SC2086
run "compile test_state (static libmamba.a)" gcc $CFLAGS_C $mflags tests/c/test_state.c \
    -o "$bin/test_state_static" "$prefix/lib/libmamba.a" $(pkg-config --static --libs-only-l mamba | sed 's/-lmamba//')

step "examples (built with their Makefiles against the installed library)"
cp -r examples/c "$tmp/ex_c"
cp -r examples/cpp "$tmp/ex_cpp"
run "make examples/c" make -s -C "$tmp/ex_c" PREFIX="$prefix"
run "make examples/cpp" make -s -C "$tmp/ex_cpp" PREFIX="$prefix"

step "run natively"
cd "$tmp"
run "header_c" "$bin/header_c"
run "header_cxx" "$bin/header_cxx"
run "test_bad_args" "$bin/test_bad_args" a.gguf b.gguf
run "test_threads" "$bin/test_threads" a.gguf
run "test_state" "$bin/test_state" a.gguf
run "test_state (static)" "$bin/test_state_static" a.gguf
# MAMBA_BACKEND_CUDA against the CPU backend; prints a skip line without a GPU.
run "test_cuda" "$bin/test_cuda" a.gguf
# mamba_sessions_step: CPU batches everywhere, CUDA batches against CPU sessions.
run "test_cuda_batch" "$bin/test_cuda_batch" a.gguf
if [ -f "$root/models/default-f32.gguf" ]; then
    run "test_cuda (default-f32)" "$bin/test_cuda" "$root/models/default-f32.gguf"
    run "test_cuda_batch (default-f32)" "$bin/test_cuda_batch" "$root/models/default-f32.gguf"
fi
run "stream_embeddings" "$tmp/ex_c/stream_embeddings" a.gguf 48
"$tmp/ex_c/generate" a.gguf "Mamba is" 48 7 0.9 >gen_c.txt || bad "generate (C)"
"$tmp/ex_cpp/generate_cpp" a.gguf "Mamba is" 48 7 0.9 >gen_cpp.txt || bad "generate (C++)"
MAMBA_LIBRARY="$prefix/lib/libmamba.so" PYTHONPATH="$root/examples/python" \
    python3 "$root/examples/python/generate.py" a.gguf "Mamba is" 48 7 0.9 >gen_py.txt || bad "generate (Python)"
run "generate: 48 tokens streamed" test "$(wc -c <gen_c.txt)" -eq $((8 + 48 + 1))
run "generate: C++ output = C output (same seed)" cmp gen_c.txt gen_cpp.txt
run "generate: Python output = C output (same seed)" cmp gen_c.txt gen_py.txt
"$tmp/ex_c/generate" a.gguf "Mamba is" 48 8 0.9 >gen_c8.txt || true
run "generate: another seed gives other tokens" bash -c "! cmp -s gen_c.txt gen_c8.txt"

# The shipped byte-level models (models/*.gguf): real weights, quantized paths, and
# the C API against `mamba-cli generate` (same model, prompt, seed -> same text).
shipped=()
for f in tiny-q8_0 default-q4_0; do
    [ -f "$root/models/$f.gguf" ] && shipped+=("$f")
done
if [ ${#shipped[@]} -gt 0 ]; then
    step "shipped models: C API = mamba-cli"
    (cd "$root" && cargo build --release --locked --bin mamba-cli)
    cli="${CARGO_TARGET_DIR:-$root/target}/release/mamba-cli"
    for f in "${shipped[@]}"; do
        model="$root/models/$f.gguf"
        run "$f: test_state" "$bin/test_state" "$model"
        run "$f: test_threads" "$bin/test_threads" "$model"
        run "$f: stream_embeddings" "$tmp/ex_c/stream_embeddings" "$model" 32
        "$tmp/ex_c/generate" "$model" "fn main() {" 64 7 0.9 >"gen_$f.c.txt" || bad "$f: generate (C)"
        "$cli" generate "fn main() {" --model "$model" --max-tokens 64 --seed 7 --temperature 0.9 \
            >"gen_$f.cli.txt" 2>/dev/null || bad "$f: mamba-cli generate"
        run "$f: C generate = mamba-cli generate (seed 7)" cmp "gen_$f.c.txt" "gen_$f.cli.txt"
    done
    sed 's/^/    /' "gen_${shipped[0]}.c.txt"
fi

step "memory checking"
checker=()
if [ "${MAMBA_NO_VALGRIND:-0}" != 1 ]; then
    if ! command -v valgrind >/dev/null 2>&1; then
        echo "installing valgrind"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind) >/dev/null 2>&1 || true
    fi
    if command -v valgrind >/dev/null 2>&1; then
        checker=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible)
    fi
fi
if [ ${#checker[@]} -gt 0 ]; then
    echo "using: ${checker[*]}"
    run "valgrind test_bad_args" "${checker[@]}" "$bin/test_bad_args" a.gguf b.gguf
    run "valgrind test_threads" "${checker[@]}" "$bin/test_threads" a.gguf
    run "valgrind test_state" "${checker[@]}" "$bin/test_state" a.gguf
    run "valgrind stream_embeddings" "${checker[@]}" "$tmp/ex_c/stream_embeddings" a.gguf 16
    run "valgrind generate" bash -c '"$@" >/dev/null' _ "${checker[@]}" "$tmp/ex_c/generate" a.gguf "Hi" 8
    run "valgrind generate_cpp" bash -c '"$@" >/dev/null' _ "${checker[@]}" "$tmp/ex_cpp/generate_cpp" a.gguf "Hi" 8
else
    echo "using AddressSanitizer (LeakSanitizer on)"
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
    for t in test_bad_args test_threads test_state; do
        # shellcheck disable=SC2086
        gcc $CFLAGS_C -fsanitize=address -fno-omit-frame-pointer $mflags "$root/tests/c/$t.c" \
            -o "$bin/${t}_asan" $mlibs -lpthread
    done
    run "asan test_bad_args" "$bin/test_bad_args_asan" a.gguf b.gguf
    run "asan test_threads" "$bin/test_threads_asan" a.gguf
    run "asan test_state" "$bin/test_state_asan" a.gguf
fi

if command -v cmake >/dev/null 2>&1; then
    step "CMake package config"
    run "cmake find_package(mamba)" bash -c "cmake -S '$root/tests/c/cmake' -B '$tmp/cmake' \
        -DCMAKE_PREFIX_PATH='$prefix' >/dev/null && cmake --build '$tmp/cmake' >/dev/null && '$tmp/cmake/cmake_header_check'"
else
    echo "(cmake not installed: the CMake package config is not checked)"
fi

echo
if [ "$failed" -ne 0 ]; then
    printf 'failed: %s\n' "${failures[@]}"
fi
echo "c-abi: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
