#!/bin/bash
# tools/mnist under `mpirun -np 2` on a small generated MNIST: the same flags give the same training as one
# process (global batch, sample order, metrics all-reduced; only rank 0 writes; --batch 47 of 540 samples gives
# every rank uneven slices, the validation and test sets are evaluated in slices), resume across world sizes
# (2 -> 1, 1 -> 2), a rank killed with SIGKILL (the job ends naming it, the checkpoint resumes), and a rank
# started with another seed (refused before any step); tools/tune under mpirun runs each point as a process of
# its own. Skipped (77) without MPI.
set -u
mnist=$1
here=$(cd "$(dirname "$0")" && pwd)
[ "$("$2" info)" = "mpi=1" ] || { echo "SKIP: the library was built without MPI"; exit 77; }
command -v mpirun >/dev/null || { echo "SKIP: mpirun not found (Debian: openmpi-bin)"; exit 77; }
root=(); [ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
mpi=(mpirun "${root[@]}" --oversubscribe -np 2 -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=passive)
# Sanitizer builds: Open MPI keeps thousands of start-up blocks until exit, many in components it has unloaded
# by then (no module to suppress by), so the ranks run without leak detection; ASan's and UBSan's other checks
# stay on, and the library's own leaks are checked by every suite that runs without mpirun.
[ -n "${ASAN_OPTIONS:-}" ] && mpi+=(-x "ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 "$here/../tools/make_mnist_data.py" "$tmp/data"
common=(--data "$tmp/data" --dataset mnist --hidden 32 --batch 47 --val-fraction 0.1 --optim adam --optim sgdm)
plain=(--data "$tmp/data" --dataset mnist --hidden 32 --batch 50 --optim adam)  # no split: the seed is the first difference
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# The epoch lines of two runs agree: every number to 1e-5 relative (f32 sums in another order), except
# timings; counts exactly. Below 1e-2 the bound is absolute (1e-7): a loss near 0 is lse - logit of logits near 10,
# whose f32 rounding (~1e-6 a sample) does not shrink with the loss.
same() {
  python3 - "$1" "$2" <<'PY' || bad "$3: $1 and $2 differ"
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert len(a) == len(b), (len(a), len(b))
for x, y in zip(a, b):
    for k, v in x.items():
        if k in ("seconds", "samples_per_s", "epochs"): continue  # epochs: the run's total
        w = y[k]
        if isinstance(v, float): assert abs(v - w) <= 1e-5 * max(abs(v), abs(w), 1e-2), (k, v, w)
        else: assert v == w, (k, v, w)
PY
}

echo "== 1 rank and 2 ranks, same flags"
"$mnist" "${common[@]}" --epochs 3 --threads 1 --out "$tmp/one" > "$tmp/one.log" 2>&1 || bad "1 rank: $(tail -3 "$tmp/one.log")"
timeout 120 "${mpi[@]}" "$mnist" "${common[@]}" --epochs 3 --out "$tmp/two" > "$tmp/two.log" 2>&1 || bad "2 ranks: $(tail -5 "$tmp/two.log")"
for o in adam sgdm; do same "$tmp/one/$o.jsonl" "$tmp/two/$o.jsonl" "1 rank vs 2 ranks"; done
[ "$(grep -c "^results in" "$tmp/two.log")" = 1 ] || bad "the summary was printed $(grep -c "^results in" "$tmp/two.log") times (rank 0 alone prints)"
[ "$(grep -c "epoch 3/3  train loss" "$tmp/two.log")" = 2 ] || bad "epoch lines not printed once per optimizer"
grep -q '"val_acc"' "$tmp/two/adam.jsonl" || bad "no validation metrics under 2 ranks"
tail -4 "$tmp/two/adam.jsonl" | cut -c1-160

echo "== resume 2 -> 1 and 1 -> 2 ranks"
timeout 120 "${mpi[@]}" "$mnist" "${common[@]}" --epochs 2 --out "$tmp/r21" > /dev/null 2>&1 || bad "2 ranks, 2 epochs"
"$mnist" "${common[@]}" --epochs 3 --threads 1 --resume --out "$tmp/r21" > "$tmp/r21.log" 2>&1 || bad "resume on 1 rank"
grep -q "resumed from .* after epoch 2" "$tmp/r21.log" || bad "2 -> 1 did not resume"
"$mnist" "${common[@]}" --epochs 2 --threads 1 --out "$tmp/r12" > /dev/null 2>&1 || bad "1 rank, 2 epochs"
timeout 120 "${mpi[@]}" "$mnist" "${common[@]}" --epochs 3 --resume --out "$tmp/r12" > "$tmp/r12.log" 2>&1 || bad "resume on 2 ranks"
grep -q "resumed from .* after epoch 2" "$tmp/r12.log" || bad "1 -> 2 did not resume"
for o in adam sgdm; do same "$tmp/one/$o.jsonl" "$tmp/r21/$o.jsonl" "2 -> 1"; same "$tmp/one/$o.jsonl" "$tmp/r12/$o.jsonl" "1 -> 2"; done

echo "== a rank started with another seed"
out=$(timeout 60 "${mpi[@]}" sh -c 'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then exec "$0" "$@" --seed 2; else exec "$0" "$@"; fi' \
      "$mnist" "${plain[@]}" --epochs 1 --out "$tmp/seed" 2>&1); rc=$?
echo "$out" | grep "error:" | head -2
[ $rc -ne 0 ] || bad "another seed on rank 1 was accepted"
echo "$out" | grep -q "rank 1 was started differently from rank 0 (flags and data): rank 0 has 'seed=1', rank 1 has 'seed=2'" \
  || bad "no clear error for another seed"
[ ! -e "$tmp/seed/adam.jsonl" ] || [ ! -s "$tmp/seed/adam.jsonl" ] || bad "an epoch ran before the refusal"

echo "== rank 1 killed with SIGKILL during an epoch"
k=$tmp/kill; mkdir -p "$k"
"${mpi[@]}" sh -c 'echo $$ > "$0/pid.$OMPI_COMM_WORLD_RANK"; shift; exec "$@"' "$k" -- "$mnist" "${plain[@]}" \
  --epochs 100000 --out "$k/out" > "$k/log" 2>&1 &
job=$!
for _ in $(seq 600); do [ -s "$k/out/adam.ckpt" ] && break; sleep 0.1; done
[ -s "$k/out/adam.ckpt" ] || bad "no checkpoint before the kill"
sleep 0.3
kill -9 "$(cat "$k/pid.1")"
start=$(date +%s)
for _ in $(seq 300); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
if kill -0 $job 2>/dev/null; then bad "the job still runs 30 s after rank 1 was killed"; kill -9 $job; fi
wait $job; rc=$?
echo "job ended $(( $(date +%s) - start )) s after the kill, exit $rc: $(grep -i "rank 1" "$k/log" | head -1)"
[ $rc -ne 0 ] || bad "the job exited 0 after losing a rank"
grep -q "rank 1 .*signal 9" "$k/log" || bad "the message does not name the lost rank"
last=$(python3 -c "import json,sys; print(len(open(sys.argv[1]).readlines()))" "$k/out/adam.jsonl")
timeout 120 "${mpi[@]}" "$mnist" "${plain[@]}" --epochs $((last + 1)) --resume --out "$k/out" > "$k/resume.log" 2>&1 \
  || bad "resume after the kill: $(tail -3 "$k/resume.log")"
grep -q "resumed from .* after epoch $last" "$k/resume.log" || bad "did not resume after epoch $last"
[ "$(wc -l < "$k/out/adam.jsonl")" = $((last + 1)) ] || bad "the resumed run did not add epoch $((last + 1))"

echo "== tools/tune under mpirun -np 2: each point a process of its own (not a rank of the tuner's job)"
bin=$(cd "$(dirname "$mnist")" && pwd)
timeout 120 "${mpi[@]}" /usr/bin/python3 "$here/../../tools/tune" mnist --bin "$bin" --epochs 1 --threads 1 \
  --optim sgdm --grid sgdm.lr=1e-2,1e-1 --max-extensions 0 --out "$tmp/tune" \
  -- --data "$tmp/data" --dataset mnist --hidden 32 --batch 50 > "$tmp/tune.log" 2>&1 \
  || { cat "$tmp/tune.log"; bad "tools/tune under mpirun"; }
runs=$(find "$tmp/tune" -name sgdm.jsonl 2>/dev/null | wc -l)
full=$(find "$tmp/tune" -name sgdm.jsonl -size +0 2>/dev/null | wc -l)
[ "$runs" = 2 ] && [ "$full" = 2 ] \
  || bad "tools/tune under mpirun: $full of $runs points wrote their results (expected 2 of 2)"

[ $fail = 0 ] && echo "dist tools: passed" || echo "dist tools: FAILED"
exit $fail
