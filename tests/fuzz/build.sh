#!/usr/bin/env bash
# Builds the libFuzzer targets (clang with -fsanitize=fuzzer,address,undefined) into build-fuzz/:
#   build-fuzz/fuzz_idx, build-fuzz/fuzz_cifar, build-fuzz/fuzz_safetensors, build-fuzz/fuzz_optim_spec,
#   build-fuzz/fuzz_text_corpus
# and prints how to run them. Not part of the default build (it needs clang, libclang-rt-14-dev and libomp-dev).
#
#   tests/fuzz/build.sh
#   build-fuzz/fuzz_idx -runs=10000000 -max_len=4096 -timeout=10 tests/fuzz/found/idx tests/fuzz/idx
#
# Inputs the fuzzers find go to the first corpus directory. tests/fuzz/<target>/ holds the seeds (seed-*,
# from make_seeds.py) and a coverage-minimised set of found inputs (named by their SHA-1), added with
#   build-fuzz/fuzz_idx -merge=1 -max_len=300 tests/fuzz/idx tests/fuzz/found/idx
# (cifar: -max_len=10000, since a record is 3,073 bytes and shorter inputs stop at the size check).
# An input that crashed goes there too once fixed, so that the normal test suite replays it.
set -euo pipefail
. "$(dirname "$0")/../../tools/common.sh"
tg_need_packages clang libclang-rt-14-dev libomp-dev
build="${TG_FUZZ_BUILD:-$TG_ROOT/build-fuzz}"
san=-fsanitize=address,undefined
if [ ! -f "$build/build.ninja" ]; then
  CXX=clang++ meson setup "$build" "$TG_ROOT" -Dtools=false -Dtests=false -Dnative=false -Db_lundef=false \
    -Dbuildtype=debugoptimized -Dcpp_args="-fsanitize=fuzzer-no-link $san -fno-sanitize-recover=undefined" >&2
fi
ninja -C "$build" libtapegrad.a >&2
flags=(-std=c++20 -g -O1 -fopenmp -fsanitize=fuzzer $san -fno-sanitize-recover=undefined -I"$TG_ROOT/include")
clang++ "${flags[@]}" -c "$TG_ROOT/tests/fuzz/targets.cpp" -o "$build/fuzz_targets.o"
for t in idx cifar safetensors optim_spec text_corpus; do
  clang++ "${flags[@]}" -DTG_FUZZ_TARGET="$t" "$TG_ROOT/tests/fuzz/fuzz_main.cpp" "$build/fuzz_targets.o" \
    "$build/libtapegrad.a" -lz -o "$build/fuzz_$t"
  echo "$build/fuzz_$t"
done
