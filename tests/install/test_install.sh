#!/usr/bin/env bash
# The two ways a user builds against tapegrad:
#   pkg-config: `meson install` into a scratch prefix, then g++ prog.cpp $(pkg-config --cflags --libs tapegrad);
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
flags=$(PKG_CONFIG_PATH="$pc" pkg-config --define-variable=prefix="$tmp/root$prefix" --cflags --libs tapegrad)
g++ -std=c++20 "${san[@]}" "$src/tests/install/consumer.cpp" $flags -o "$tmp/consumer"
"$tmp/consumer"
echo "pkg-config: ok"

if [ "${TG_TEST_SUBPROJECT:-0}" = 1 ]; then
  mkdir -p "$tmp/proj/subprojects"
  cp "$src/tests/install/meson.build" "$src/tests/install/consumer.cpp" "$tmp/proj/"
  ln -s "$src" "$tmp/proj/subprojects/tapegrad"
  meson setup "$tmp/proj/build" "$tmp/proj" >/dev/null
  ninja -C "$tmp/proj/build" >/dev/null
  "$tmp/proj/build/consumer"
  echo "subproject: ok"
fi
