#!/usr/bin/env bash
# The ways a user builds against tapegrad:
#   pkg-config: `meson install` into a scratch prefix, then g++ prog.cpp $(pkg-config --cflags --libs tapegrad)
#               (and with --static); the flags must be the include path only, and the packages required only zlib
#               (no Eigen, nlohmann-json, -march or -fopenmp in users' compile flags);
#   CMake: find_package(tapegrad) + target_link_libraries(consumer tapegrad::tapegrad) (skipped without cmake);
#   subproject (TG_TEST_SUBPROJECT=1, slower: builds the library again): dependency('tapegrad').
# Usage: test_install.sh BUILD_DIR SOURCE_DIR [SANITIZERS]  (the build's b_sanitize: its users link the runtimes)
set -euo pipefail
build=$1 src=$2
san=()
[ "${3:-none}" != none ] && san=("-fsanitize=$3")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

meson install -C "$build" --destdir "$tmp/root" --quiet
pc=$(dirname "$(find "$tmp/root" -name tapegrad.pc | head -1)")
prefix=$(sed -n 's/^prefix=//p' "$pc/tapegrad.pc")
pkgconf() { PKG_CONFIG_PATH="$pc" pkg-config --define-variable=prefix="$tmp/root$prefix" "$@" tapegrad; }
cflags=$(pkgconf --cflags | xargs)  # (xargs: without the trailing space)
if [ "$cflags" != "-I$tmp/root$prefix/include" ]; then
  echo "tapegrad.pc: Cflags should be the include path only, got: $cflags"
  exit 1
fi
requires=$(pkgconf --print-requires --print-requires-private | tr '\n' ' ')
if [ "$requires" != "zlib " ]; then
  echo "tapegrad.pc: a user should need zlib only (no header needs more), got: $requires"
  exit 1
fi
for how in "" --static; do
  g++ -std=c++20 "${san[@]}" "$src/tests/install/consumer.cpp" $(pkgconf --cflags --libs $how) -o "$tmp/consumer"
  "$tmp/consumer"
  echo "pkg-config --cflags --libs $how: ok"
done

if command -v cmake >/dev/null; then
  cfg=$(dirname "$(find "$tmp/root" -name tapegradConfig.cmake | head -1)")
  sanflags="${san[*]:-}"
  cmake -S "$src/tests/install" -B "$tmp/cmake" -DCMAKE_BUILD_TYPE=Release -Dtapegrad_DIR="$cfg" \
    -DCMAKE_CXX_FLAGS="$sanflags" -DCMAKE_EXE_LINKER_FLAGS="$sanflags" >/dev/null
  cmake --build "$tmp/cmake" --verbose > "$tmp/cmake.log"
  compile=$(grep -E -- "-c [^ ]*consumer.cpp" "$tmp/cmake.log" || true)
  if [ -z "$compile" ] || grep -qE -- "-fopenmp|-march" <<<"$compile"; then
    echo "cmake: a user's compile line should carry no -fopenmp or -march, got: ${compile:-(none found)}"; exit 1
  fi
  "$tmp/cmake/consumer"
  echo "cmake: ok"
else
  echo "cmake: skipped (cmake is not installed; tools/test installs it)"
fi

if [ "${TG_TEST_SUBPROJECT:-0}" = 1 ]; then
  mkdir -p "$tmp/proj/subprojects"
  cp "$src/tests/install/meson.build" "$src/tests/install/consumer.cpp" "$tmp/proj/"
  ln -s "$src" "$tmp/proj/subprojects/tapegrad"
  meson setup "$tmp/proj/build" "$tmp/proj" >/dev/null
  ninja -C "$tmp/proj/build" >/dev/null
  "$tmp/proj/build/consumer"
  echo "subproject: ok"
fi
