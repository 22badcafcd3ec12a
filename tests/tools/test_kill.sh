#!/usr/bin/env bash
# Crash safety: a training run is killed with SIGKILL at random moments, many times, while it trains and
# writes its ~28 MB checkpoint every epoch; every fifth run is killed the moment its save has begun, and at
# least two kills must have cut a save short (the writer's temporary file is left). After every kill the newest
# complete checkpoint must load and the run must resume; at the end the JSON lines hold exactly one line per
# epoch, 1..N, with no gap or repeat.
# Usage: test_kill.sh MNIST_BINARY
set -euo pipefail
mnist=$1
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$here/make_mnist_data.py" "$tmp/data"

run=(--data "$tmp/data" --dataset mnist --hidden 3000 --batch 200 --threads 1 --optim adam --out "$tmp/out" --resume)
RANDOM=7
kills=0
mid_save=0  # kills that cut a save short
for i in $(seq 1 25); do
  "$mnist" "${run[@]}" --epochs 1000 > "$tmp/log" 2>&1 &
  pid=$!
  if [ $((i % 5)) -eq 0 ]; then
    # Every fifth run is killed as soon as its save has begun: its temporary file "<checkpoint>.tmp.<pid>" is
    # there (waiting at most ~10 s for it).
    for _ in $(seq 1 1000); do
      [ -n "$(find "$tmp/out" -name "*.tmp.$pid" 2>/dev/null)" ] && break
      sleep 0.01
    done
  else
    sleep "0.$((RANDOM % 6 + 2))$((RANDOM % 10))"
  fi
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null || true
  # A kill during a save leaves that writer's temporary file (the next save removes it).
  [ -n "$(find "$tmp/out" -name "*.tmp.$pid" 2>/dev/null)" ] && mid_save=$((mid_save + 1))
done
[ $kills -ge 18 ] || { echo "FAIL: only $kills of 25 runs were still running when killed"; exit 1; }
[ $mid_save -ge 2 ] || { echo "FAIL: only $mid_save of $kills kills landed during a save (at least 2 expected)"; exit 1; }

# The newest complete checkpoint loads: one more epoch on top of it must succeed.
done_epochs=$(wc -l < "$tmp/out/adam.jsonl")
"$mnist" "${run[@]}" --epochs $((done_epochs + 1)) > "$tmp/log" 2>&1 || { echo "FAIL: resume after $kills kills"; cat "$tmp/log"; exit 1; }
python3 - "$tmp/out/adam.jsonl" $((done_epochs + 1)) <<'PY'
import json, sys
epochs = [json.loads(l)["epoch"] for l in open(sys.argv[1])]
want = list(range(1, int(sys.argv[2]) + 1))
assert epochs == want, f"epochs in the JSON lines: {epochs}, expected {want}"
PY
echo "killed $kills times ($mid_save during a save); resumed to epoch $((done_epochs + 1)): ok"
