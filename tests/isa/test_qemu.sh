#!/usr/bin/env bash
# The default build on a CPU without AVX-512: qemu-x86_64 -cpu max emulates one with AVX2 and FMA. Nothing may
# die with an illegal instruction, and the level chosen must be avx2. The cases of the core suites that reach
# every f32 kernel (qemu is slow), and the error for TG_CPU_ISA=avx512 there.
# Skipped (77) without qemu-x86_64 (Debian: qemu-user; tools/test installs it).
# Usage: test_qemu.sh TESTS_DIR [SANITIZERS]  (the build's b_sanitize: a sanitizer's shadow memory does not run
# under qemu-user, so such a build is skipped)
set -uo pipefail
dir=$1
[ "${2:-none}" != none ] && { echo "skipped: a build with -fsanitize=$2 does not run under qemu-user"; exit 77; }
command -v qemu-x86_64 >/dev/null || { echo "skipped: qemu-x86_64 is not installed (Debian package qemu-user)"; exit 77; }
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
fail=0
run() {  # what, [VAR=value...], program, arguments: the program under qemu must exit 0 (qemu-user does not
  local what=$1 vars=(); shift  # follow execve, so the environment is set around qemu)
  while [[ "$1" == *=* ]]; do vars+=("$1"); shift; done
  local t0=$SECONDS
  out=$(env "${vars[@]}" qemu-x86_64 -cpu max "$@" 2>&1)
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "$out" | tail -20
    [ $rc -eq 132 ] && echo "(exit 132: SIGILL, an instruction this CPU lacks)"
    echo "FAIL: $what under qemu-x86_64 -cpu max (exit $rc)"; fail=1
  else echo "ok ($((SECONDS - t0)) s): $what: $(echo "$out" | grep -m1 'CPU level\|CPU kernels\|test cases:' || true)"; fi
}
# The cases that reach every f32 kernel, leaving out the long ones (qemu runs ~50x slower).
run "isa suite, level avx2 chosen" TG_EXPECT_ISA=avx2 "$dir/test_isa" -tce='*micro-kernels equal*' -s
run "gemm suite" "$dir/test_gemm" -tc='*batched*'
run "conv suite" "$dir/test_conv" -tce='*several threads*'
run "rnn suite" "$dir/test_rnn" -tce='language model*'
run "grad suite" "$dir/test_grad" -tce="*every op's gradient*"
run "optim suite" "$dir/test_optim" -tce='*mlp*,*large tensors*'
run "TG_CPU_ISA=avx512 is an error here" TG_CPU_ISA=avx512 TG_EXPECT_ISA_ERROR="this CPU lacks AVX-512F" \
  "$dir/test_isa" -tc='*TG_CPU_ISA*error*'
exit $fail
