#!/bin/bash
# Data parallelism on two ranks: equivalence with one process, resume across world sizes, and the faults
# (a rank killed with SIGKILL; a rank started with other flags or another model). Skipped (77) when the
# library was built without MPI or mpirun is missing.
set -u
check=$1
[ "$("$check" info)" = "mpi=1" ] || { echo "SKIP: the library was built without MPI (meson -Dmpi=disabled, or libopenmpi-dev missing)"; exit 77; }
command -v mpirun >/dev/null || { echo "SKIP: mpirun not found (Debian: openmpi-bin)"; exit 77; }
root=(); [ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
# One thread per rank, a passive wait: two ranks with spinning threads on two cores run up to 50x slower.
mpi=(mpirun "${root[@]}" --oversubscribe -np 2 -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=passive)
# Sanitizer builds: Open MPI keeps thousands of start-up blocks until exit, many in components it has unloaded
# by then (no module to suppress by), so the ranks run without leak detection; ASan's and UBSan's other checks
# stay on, and the library's own leaks are checked by every suite that runs without mpirun.
[ -n "${ASAN_OPTIONS:-}" ] && mpi+=(-x "ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0")
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

echo "== equivalence and resume across world sizes"
timeout 240 "${mpi[@]}" "$check" equivalence "$dir/eq" || bad "equivalence (exit $?)"

echo "== tensors on a device: the test device (through host memory), then cuda (NCCL)"
timeout 120 "${mpi[@]}" "$check" device "$dir/dev" test || bad "device tensors on the test device (exit $?)"
# NCCL wants one GPU per rank.
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if [ "$("$check" gpus)" = 1 ] && [ "$gpus" -ge 2 ]; then
  timeout 120 "${mpi[@]}" "$check" device "$dir/cuda" cuda || bad "device tensors on cuda (exit $?)"
else
  echo "SKIP (cuda part only): NCCL needs a CUDA build and 2 GPUs, one per rank ($gpus here)"
fi

echo "== a rank whose flags or data differ is refused before any step"
out=$(timeout 60 "${mpi[@]}" "$check" train "$dir/seed" --steps 5 --seed-by-rank 2>&1); rc=$?
echo "$out" | grep "error" | head -2
[ $rc -ne 0 ] || bad "another seed on rank 1 was accepted"
echo "$out" | grep -q "rank 1 was started differently from rank 0 (flags and data): rank 0 has 'seed=1', rank 1 has 'seed=2'" \
  || bad "no clear error for another seed"
! echo "$out" | grep -q "checkpoint at step" || bad "steps ran before the refusal"
out=$(timeout 60 "${mpi[@]}" "$check" train "$dir/model" --steps 5 --hidden-by-rank 2>&1); rc=$?
echo "$out" | grep "error" | head -2
[ $rc -ne 0 ] || bad "another model on rank 1 was accepted"
echo "$out" | grep -q "rank 1 was started differently from rank 0 (model layout): rank 0 has 'fc1.bias=f32\[64\]', rank 1 has 'fc1.bias=f32\[128\]'" \
  || bad "no clear error for another model"

echo "== rank 1 killed with SIGKILL during training"
train=$dir/kill
mkdir -p "$train"
"${mpi[@]}" "$check" train "$train" > "$train/out.txt" 2>&1 &
job=$!
for _ in $(seq 600); do grep -q "checkpoint at step 30" "$train/out.txt" 2>/dev/null && break; sleep 0.1; done
grep -q "checkpoint at step" "$train/out.txt" || bad "no checkpoint before the kill"
kill -9 "$(cat "$train/pid.1")"
start=$(date +%s)
for _ in $(seq 300); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
if kill -0 $job 2>/dev/null; then
  bad "the job still runs 30 s after rank 1 was killed"; kill -9 $job; fi
wait $job; rc=$?
echo "job ended $(( $(date +%s) - start )) s after the kill, exit $rc:"
grep -i "rank 1" "$train/out.txt" | head -3
[ $rc -ne 0 ] || bad "the job exited 0 after losing a rank"
grep -q "rank 1 .*signal 9" "$train/out.txt" || bad "the message does not name the lost rank"
last=$(grep "checkpoint at step" "$train/out.txt" | tail -1 | awk '{print $4}')
out=$(timeout 120 "${mpi[@]}" "$check" train "$train" --resume --steps $((last + 20)) 2>&1) || bad "resume after the kill: $out"
echo "$out"
echo "$out" | grep -q "resumed at step $last" || bad "the resumed run did not start from the last checkpoint ($last)"
echo "$out" | grep -q "done at step $((last + 20))" || bad "the resumed run did not finish"

[ $fail = 0 ] && echo "dist mpi: passed" || echo "dist mpi: FAILED"
exit $fail
