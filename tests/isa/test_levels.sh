#!/usr/bin/env bash
# The core suites with each instruction-set level forced (TG_CPU_ISA), so that every kernel a level runs is
# checked on this machine: the default level runs in the ordinary suites; here avx2 and baseline (each
# skipped when the CPU lacks it), then the errors for a level that is unknown or beyond the CPU.
# Usage: test_levels.sh TESTS_DIR
set -uo pipefail
dir=$1
suites=(isa gemm conv winograd rnn grad optim)
export OMP_WAIT_POLICY=passive
fail=0
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]]; }

for level in avx2 baseline; do
  if [ $level = avx2 ] && ! { has avx2 && has fma; }; then echo "level avx2: skipped (this CPU lacks AVX2/FMA)"; continue; fi
  for s in "${suites[@]}"; do
    out=$(TG_CPU_ISA=$level TG_EXPECT_ISA=$level "$dir/test_$s" 2>&1)
    rc=$?
    if [ $rc -ne 0 ]; then echo "$out" | tail -30; echo "FAIL: suite $s with TG_CPU_ISA=$level (exit $rc)"; fail=1
    else echo "ok: suite $s with TG_CPU_ISA=$level: $(echo "$out" | grep -m1 'test cases:')"; fi
  done
done

expect_error() {  # TG_CPU_ISA value, words the error must contain
  if TG_CPU_ISA=$1 TG_EXPECT_ISA_ERROR=$2 "$dir/test_isa" -tc='*TG_CPU_ISA*error*' >/dev/null 2>&1; then
    echo "ok: TG_CPU_ISA=$1 is an error naming '$2'"
  else echo "FAIL: TG_CPU_ISA=$1 should be an error naming '$2'"; fail=1; fi
}
expect_error sse9 "unknown level (expected avx512, avx2 or baseline"
expect_error AVX2 "unknown level"
has avx512f || expect_error avx512 "this CPU lacks AVX-512F"
exit $fail
