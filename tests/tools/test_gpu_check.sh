#!/usr/bin/env bash
# tools/gpu_check on a machine without a GPU (CUDA builds only): it builds what it runs, then stops with
# "no CUDA device" and exit code 77, its summary saying so and nothing else run. With a GPU this test is skipped:
# there tools/gpu_check is the GPU session's own run (minutes), not a test.
# Usage: test_gpu_check.sh SOURCE_ROOT BUILD_DIR
set -euo pipefail
root=$1 build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

set +e
TG_TEST_DEVICE=cuda "$build/tests/test_backend_ops" --list-test-cases > /dev/null 2>&1
probe=$?
set -e
[ $probe = 77 ] || { echo "SKIP: a CUDA device is here: run tools/gpu_check itself"; exit 77; }

set +e
TG_BUILD=$build "$root/tools/gpu_check" --out "$tmp/out" > "$tmp/log" 2>&1
rc=$?
set -e
[ $rc = 77 ] || { cat "$tmp/log"; fail "tools/gpu_check without a GPU exited $rc, expected 77"; }
grep -q "no CUDA device" "$tmp/log" || { cat "$tmp/log"; fail "it does not say 'no CUDA device'"; }
grep -q "^| build | passed |" "$tmp/out/summary.md" || { cat "$tmp/out/summary.md"; fail "no passed build in the summary"; }
grep -q "^| gpu | no CUDA device" "$tmp/out/summary.md" || { cat "$tmp/out/summary.md"; fail "the summary lacks the stop"; }
! grep -q "^| test-\|^| bench-\|^| cifar10-\|^| ptb-" "$tmp/out/summary.md" || fail "steps ran without a GPU"
echo "gpu_check: built, then stopped with 'no CUDA device' (exit 77)"
