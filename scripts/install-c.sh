#!/usr/bin/env bash
# Build the release C library and install it for C/C++ users:
#   scripts/install-c.sh PREFIX
# installs
#   PREFIX/lib/libmamba.so.VERSION (+ libmamba.so.0 -> it, libmamba.so -> libmamba.so.0)
#   PREFIX/lib/libmamba.a
#   PREFIX/include/mamba.h
#   PREFIX/lib/pkgconfig/mamba.pc                     (pkg-config --cflags --libs mamba)
#   PREFIX/lib/cmake/mamba/mambaConfig.cmake (+ Version) (find_package(mamba); mamba::mamba)
# Set CARGO_TARGET_DIR to build elsewhere; MAMBA_SKIP_BUILD=1 to install what is built.
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
prefix="$(cd "$1" && pwd)"
cd "$root"

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
major="${version%%.*}"
# The SONAME (mamba-ffi/build.rs) is libmamba.so.0: the 0.x ABI.
soname="libmamba.so.${major}"
if [ "${MAMBA_SKIP_BUILD:-0}" != 1 ]; then
    cargo build --release --locked -p mamba-ffi
fi
out="${CARGO_TARGET_DIR:-$root/target}/release"

install -d "$prefix/lib" "$prefix/include" "$prefix/lib/pkgconfig" "$prefix/lib/cmake/mamba"
install -m 755 "$out/libmamba.so" "$prefix/lib/libmamba.so.$version"
ln -sfn "libmamba.so.$version" "$prefix/lib/$soname"
ln -sfn "$soname" "$prefix/lib/libmamba.so"
install -m 644 "$out/libmamba.a" "$prefix/lib/libmamba.a"
install -m 644 include/mamba.h "$prefix/include/mamba.h"

# What the Rust standard library inside libmamba.a needs (rustc --print native-static-libs).
static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

cat > "$prefix/lib/pkgconfig/mamba.pc" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: mamba
Description: Mamba-1 (selective state-space model) inference, C API
Version: $version
Libs: -L\${libdir} -lmamba
Libs.private: $static_libs
Cflags: -I\${includedir}
PC

cat > "$prefix/lib/cmake/mamba/mambaConfig.cmake" <<'CMAKE'
# CMake package config for libmamba: find_package(mamba) gives
#   mamba::mamba         the shared library (libmamba.so)
#   mamba::mamba_static  the static library (libmamba.a) with its system libraries
get_filename_component(_mamba_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET mamba::mamba)
  add_library(mamba::mamba SHARED IMPORTED)
  set_target_properties(mamba::mamba PROPERTIES
    IMPORTED_LOCATION "${_mamba_prefix}/lib/libmamba.so"
    IMPORTED_SONAME "@SONAME@"
    INTERFACE_INCLUDE_DIRECTORIES "${_mamba_prefix}/include")
endif()
if(NOT TARGET mamba::mamba_static)
  add_library(mamba::mamba_static STATIC IMPORTED)
  set_target_properties(mamba::mamba_static PROPERTIES
    IMPORTED_LOCATION "${_mamba_prefix}/lib/libmamba.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_mamba_prefix}/include"
    INTERFACE_LINK_LIBRARIES "gcc_s;util;rt;pthread;m;dl;c")
endif()
set(mamba_INCLUDE_DIRS "${_mamba_prefix}/include")
set(mamba_LIBRARIES mamba::mamba)
unset(_mamba_prefix)
CMAKE
sed -i "s/@SONAME@/$soname/" "$prefix/lib/cmake/mamba/mambaConfig.cmake"

cat > "$prefix/lib/cmake/mamba/mambaConfigVersion.cmake" <<CMAKE
# 0.x releases are compatible only within the same minor version.
set(PACKAGE_VERSION "$version")
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  string(REGEX MATCH "^[0-9]+\\\\.[0-9]+" _have "\${PACKAGE_VERSION}")
  string(REGEX MATCH "^[0-9]+\\\\.[0-9]+" _want "\${PACKAGE_FIND_VERSION}")
  if(PACKAGE_FIND_VERSION STREQUAL "" OR _have STREQUAL _want)
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  else()
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  endif()
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
CMAKE

echo "install-c: installed libmamba $version under $prefix"
