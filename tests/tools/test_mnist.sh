#!/usr/bin/env bash
# End to end: the mnist replication program on a small generated MNIST-format data set (gzip IDX files):
# it trains two optimizers, writes JSON lines and a summary, and resuming after epoch 2 gives exactly the
# lines of a straight 3-epoch run; --device test gives the lines of --device cpu. Bad flags exit with code 2
# and a message.
# Usage: test_mnist.sh MNIST_BINARY
set -euo pipefail
mnist=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 "$(dirname "$0")/make_mnist_data.py" "$tmp/data"

common=(--data "$tmp/data" --dataset mnist --hidden 32 --batch 50 --threads 1 --optim sgdm --optim adabound)
"$mnist" "${common[@]}" --epochs 3 --out "$tmp/straight" > "$tmp/log1" 2>&1
"$mnist" "${common[@]}" --epochs 3 --out "$tmp/again" > "$tmp/log1b" 2>&1  # determinism: the same run twice
"$mnist" "${common[@]}" --epochs 2 --out "$tmp/resumed" > "$tmp/log2" 2>&1
"$mnist" "${common[@]}" --epochs 3 --out "$tmp/resumed" --resume > "$tmp/log3" 2>&1

n=0
for f in "$tmp/straight"/*.jsonl; do
  b=$(basename "$f")
  [ "$(wc -l < "$f")" -eq 3 ] || { echo "FAIL: $b has $(wc -l < "$f") lines, expected 3"; exit 1; }
  # seconds and throughput differ run to run; everything else must be identical
  strip() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    j = json.loads(l); [j.pop(k, None) for k in ("seconds", "samples_per_s", "time", "elapsed_s", "epochs")]; print(json.dumps(j, sort_keys=True))' "$1"; }
  diff <(strip "$f") <(strip "$tmp/resumed/$b") || { echo "FAIL: resumed run differs from the straight run ($b)"; exit 1; }
  diff <(strip "$f") <(strip "$tmp/again/$b") || { echo "FAIL: the same run twice gave different results ($b)"; exit 1; }
  tensors() { python3 -c 'import json,struct,sys  # the tensors of a checkpoint, without its metadata (timing)
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__")
print(json.dumps(h, sort_keys=True)); print(b[8 + n:].hex())' "$1"; }
  cmp -s <(tensors "${f%.jsonl}.ckpt") <(tensors "$tmp/again/${b%.jsonl}.ckpt") ||
    { echo "FAIL: the same run twice left different parameters or optimizer state (${b%.jsonl}.ckpt)"; exit 1; }
  n=$((n + 1))
done
[ $n -eq 2 ] || { echo "FAIL: expected 2 JSON-lines files, found $n"; exit 1; }
[ -f "$tmp/straight/summary.json" ] || { echo "FAIL: no summary.json"; exit 1; }
python3 - "$tmp/straight/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
text = json.dumps(s)
assert "sgdm" in text.lower() and "adabound" in text.lower(), text[:300]
PY
grep -qi "accuracy\|acc" "$tmp/straight/summary.md"

set +e
"$mnist" --epochs -1 --data "$tmp/data" > "$tmp/bad" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] || { echo "FAIL: --epochs -1 exited $rc, expected 2"; cat "$tmp/bad"; exit 1; }
set +e
"$mnist" "${common[@]}" --optim "adam:lr=-1" --epochs 1 --out "$tmp/x" > "$tmp/bad" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "lr" "$tmp/bad" || { echo "FAIL: a negative lr was not refused clearly (rc $rc)"; cat "$tmp/bad"; exit 1; }
# --telemetry 4: one line per parameter tensor every 4 steps, for the adaptive optimizer only (SGDM has none);
# AdaBound's lines carry the bounds and the clamped fractions. 600 samples / 50 = 12 steps: steps 4, 8, 12.
"$mnist" "${common[@]}" --epochs 1 --telemetry 4 --out "$tmp/tele" > "$tmp/log4" 2>&1 ||
  { echo "FAIL: --telemetry run"; cat "$tmp/log4"; exit 1; }
python3 - "$tmp/tele/telemetry.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [(r["step"], r["param"]) for r in rows] == [(s, p) for s in (4, 8, 12) for p in
        ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")], [(r["step"], r["param"]) for r in rows]
for r in rows:
    assert r["optimizer"] == "AdaBound", r
    q, u = r["lr"], r["lr_unclamped"]
    assert q["min"] <= q["p5"] <= q["p25"] <= q["median"] <= q["p75"] <= q["p95"] <= q["max"], r
    assert r["lower_bound"] - 1e-12 <= q["min"] and q["max"] <= r["upper_bound"] + 1e-12, r
    assert 0 <= r["frac_at_lower"] <= 1 and 0 <= r["frac_at_upper"] <= 1 and u["max"] >= q["max"], r
PY
# The test device (the CPU kernels under their own tag and memory): the same lines, telemetry and checkpoints
# as the CPU run above, bit for bit (only timing and the device's name may differ).
"$mnist" "${common[@]}" --epochs 1 --telemetry 4 --device test --out "$tmp/tele_test" > "$tmp/log5" 2>&1 ||
  { echo "FAIL: --device test run"; cat "$tmp/log5"; exit 1; }
m=0
for f in "$tmp/tele"/*.jsonl; do
  b=$(basename "$f")
  same() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    j = json.loads(l); [j.pop(k, None) for k in ("seconds", "samples_per_s", "time", "elapsed_s", "device")]; print(json.dumps(j, sort_keys=True))' "$1"; }
  [ -s "$f" ] && diff <(same "$f") <(same "$tmp/tele_test/$b") ||
    { echo "FAIL: --device test differs from --device cpu ($b)"; exit 1; }
  if [ -f "${f%.jsonl}.ckpt" ]; then
    cmp -s <(tensors "${f%.jsonl}.ckpt") <(tensors "$tmp/tele_test/${b%.jsonl}.ckpt") ||
      { echo "FAIL: --device test left different parameters or optimizer state (${b%.jsonl}.ckpt)"; exit 1; }
  fi
  m=$((m + 1))
done
[ $m -eq 3 ] || { echo "FAIL: expected 3 JSON-lines files (two optimizers, telemetry) for the device check, found $m"; exit 1; }
echo "mnist end to end: ok"
