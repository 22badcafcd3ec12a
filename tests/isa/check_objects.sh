#!/usr/bin/env bash
# The per-level objects (micro_avx512.cpp, micro_avx2.cpp) may define no symbol but their table: an inline
# function of std or Eigen compiled there with -mavx512f would be a weak symbol, and the linker could pick that
# copy for baseline callers (SIGILL on a CPU without AVX-512). Their own kernels have internal linkage.
# Usage: check_objects.sh LIB.a...
set -uo pipefail
fail=0
for lib in "$@"; do
  extra=$(nm -C --defined-only -g "$lib" | awk 'NF >= 3 && $2 != "U"' |
          grep -v -E ' T tapegrad::cpu::isa::avx(512|2)_table\(\)$')
  if [ -n "$extra" ]; then
    echo "FAIL: $(basename "$lib") defines symbols other than its table (the linker may pick them for other code):"
    echo "$extra"; fail=1
  else
    echo "ok: $(basename "$lib") defines only $(nm -C --defined-only -g "$lib" | awk 'NF >= 3 {$1 = ""; $2 = ""; print}')"
  fi
done
exit $fail
