#!/usr/bin/env bash
# The divergence guard of the mnist program: a NaN/Inf loss or gradient stops that optimizer with a message
# naming the step, the parameter and the optimizer (exit code 3), the others still run, and its checkpoint
# stays the last good one, from which --resume continues exactly; --skip-nonfinite skips and counts instead.
# Usage: test_divergence.sh MNIST_BINARY
set -euo pipefail
mnist=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$(dirname "$0")/make_mnist_data.py" "$tmp/data"
common=(--data "$tmp/data" --dataset mnist --hidden 32 --batch 50 --threads 1)  # 12 steps per epoch
fail() { echo "FAIL: $*"; cat "$tmp/log" 2>/dev/null | tail -20; exit 1; }
# The value of KEY in line LINE (1-based) of a JSON-lines file.
field() { python3 -c 'import json,sys; print(json.dumps(json.loads(open(sys.argv[1]).read().splitlines()[int(sys.argv[2])-1]).get(sys.argv[3])))' "$@"; }
ckpt_epoch() { python3 -c 'import json,struct,sys
b=open(sys.argv[1],"rb").read(); n=struct.unpack("<Q",b[:8])[0]; print(json.loads(b[8:8+n])["__metadata__"]["epoch"])' "$1"; }

# 1. A real blow-up: lr 1e30 overflows at step 2. The run stops there, Adam after it still trains.
set +e
"$mnist" "${common[@]}" --epochs 2 --optim "sgd:lr=1e30" --optim adam --out "$tmp/blow" > "$tmp/log" 2>&1; rc=$?
set -e
[ $rc -eq 3 ] || fail "a blow-up exited $rc, expected 3"
grep -q "step 2 (epoch 1, batch 2/12) of optimizer SGD (sgd:lr=1e30)" "$tmp/log" || fail "the message does not name the step and optimizer"
grep -q "the gradient of parameter '[a-z0-9_.]*weight' holds NaN or Inf" "$tmp/log" || fail "the message does not name the parameter"
[ ! -e "$tmp/blow/sgd.ckpt" ] || fail "a checkpoint was written for a run that completed no epoch"
[ "$(wc -l < "$tmp/blow/adam.jsonl")" -eq 2 ] || fail "the optimizer after the diverged one did not run"
grep -q '"diverged": true' "$tmp/blow/summary.json" || fail "summary.json does not mark the run diverged"

# 2. A NaN at step 15 (epoch 2): the epoch-1 checkpoint is left as it was, and --resume from it gives the
#    lines of a straight run.
set +e
"$mnist" "${common[@]}" --epochs 3 --optim sgdm --debug-nan-at 15 --out "$tmp/stop" > "$tmp/log" 2>&1; rc=$?
set -e
[ $rc -eq 3 ] || fail "an injected NaN exited $rc, expected 3"
grep -q "step 15 (epoch 2, batch 3/12) of optimizer SGDM" "$tmp/log" || fail "the message does not name step 15"
[ "$(ckpt_epoch "$tmp/stop/sgdm.ckpt")" = 1 ] || fail "the checkpoint is not the epoch-1 one"
"$mnist" "${common[@]}" --epochs 3 --optim sgdm --out "$tmp/stop" --resume > "$tmp/log" 2>&1 || fail "resume after the stop failed"
"$mnist" "${common[@]}" --epochs 3 --optim sgdm --out "$tmp/straight" > "$tmp/log" 2>&1 || fail "the straight run failed"
strip() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    j = json.loads(l); [j.pop(k, None) for k in ("seconds", "samples_per_s")]; print(json.dumps(j, sort_keys=True))' "$1"; }
diff <(strip "$tmp/straight/sgdm.jsonl") <(strip "$tmp/stop/sgdm.jsonl") || fail "resuming after the stop differs from a straight run"

# 3. --skip-nonfinite: the poisoned step is skipped and counted, training goes on.
"$mnist" "${common[@]}" --epochs 2 --optim sgdm --debug-nan-at 15 --skip-nonfinite --out "$tmp/skip" > "$tmp/log" 2>&1 ||
  fail "--skip-nonfinite exited $?"
[ "$(field "$tmp/skip/sgdm.jsonl" 1 skipped_steps)" = 0 ] || fail "epoch 1 counts skipped steps"
[ "$(field "$tmp/skip/sgdm.jsonl" 2 skipped_steps)" = 1 ] || fail "epoch 2 does not count its skipped step"
[ "$(field "$tmp/skip/sgdm.jsonl" 2 steps)" = 23 ] || fail "the skipped step reached the optimizer"
grep -q "skipped step 15" "$tmp/log" || fail "the skipped step is not reported"
#    and with the real blow-up every step after the first is skipped; the run still ends normally.
"$mnist" "${common[@]}" --epochs 1 --optim "sgd:lr=1e30" --skip-nonfinite --out "$tmp/skip2" > "$tmp/log" 2>&1 ||
  fail "--skip-nonfinite on a blow-up exited $?"
[ "$(field "$tmp/skip2/sgd.jsonl" 1 skipped_steps)" = 11 ] || fail "expected 11 skipped steps"
echo "mnist divergence guard: ok"
