#!/usr/bin/env bash
# End to end: the cifar replication program on a small generated CIFAR-10-format data set (5 x 32 training
# and 100 test records): ResNet-20 with two optimizers writes JSON lines, checkpoints and a summary beside
# the paper's numbers; training 2 epochs, stopping and resuming for a third gives exactly the metric lines
# (timing aside) and bit-identical checkpoint tensors (model, BN buffers, optimizer state) of a straight
# 3-epoch run. Bad input exits with code 2 and a message naming the problem.
# Usage: test_cifar.sh CIFAR_BINARY
set -euo pipefail
cifar=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

python3 "$(dirname "$0")/make_cifar_data.py" "$tmp/data" 32

common=(--data "$tmp/data" --dataset cifar10 --records-per-file 0 --train-limit 0 --test-limit 0 --batch 32
        --eval-batch 50 --threads 1 --optim sgdm --optim adabound --milestones 2)
"$cifar" "${common[@]}" --epochs 3 --out "$tmp/straight" > "$tmp/log1" 2>&1 || { cat "$tmp/log1"; fail "straight run"; }
"$cifar" "${common[@]}" --epochs 2 --out "$tmp/resumed" > "$tmp/log2" 2>&1 || { cat "$tmp/log2"; fail "2-epoch run"; }
"$cifar" "${common[@]}" --epochs 3 --out "$tmp/resumed" --resume > "$tmp/log3" 2>&1 || { cat "$tmp/log3"; fail "resume"; }
grep -q "resumed from .*sgdm.ckpt after epoch 2" "$tmp/log3" || { cat "$tmp/log3"; fail "the resume did not resume"; }

python3 - "$tmp/straight" "$tmp/resumed" <<'PY'
import json, os, struct, sys
straight, resumed = sys.argv[1], sys.argv[2]
TIMING = ("seconds", "images_per_s", "epochs")
for name in ("sgdm", "adabound"):
    a = [json.loads(l) for l in open(os.path.join(straight, name + ".jsonl"))]
    b = [json.loads(l) for l in open(os.path.join(resumed, name + ".jsonl"))]
    assert [j["epoch"] for j in a] == [1, 2, 3], a
    for x, y in zip(a, b):
        for k in TIMING:
            x.pop(k, None); y.pop(k, None)
        assert x == y, (name, x, y)
    for j in a:
        assert j["dataset"] == "cifar10" and 0 <= j["test_acc"] <= 1 and 0 <= j["train_acc"] <= 1, j
    assert a[0]["lr"] == a[1]["lr"] and abs(a[2]["lr"] - 0.1 * a[1]["lr"]) < 1e-12 * a[1]["lr"], "milestone 2"

    def tensors(path):  # safetensors: u64 header length, JSON header, data; returns {name: bytes}
        data = open(path, "rb").read()
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n])
        header.pop("__metadata__", None)
        return {k: data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in header.items()}
    ta, tb = tensors(os.path.join(straight, name + ".ckpt")), tensors(os.path.join(resumed, name + ".ckpt"))
    assert ta.keys() == tb.keys(), set(ta) ^ set(tb)
    assert any("running_mean" in k for k in ta) and any(k.startswith("optim.") for k in ta), sorted(ta)[:5]
    diff = [k for k in ta if ta[k] != tb[k]]
    assert not diff, f"{name}: tensors differ after resume: {diff[:5]}"
s = json.load(open(os.path.join(straight, "summary.json")))
assert s["experiment"] == "cifar" and s["model"] == "resnet20" and s["in_channels"] == 3, s
assert [r["optimizer"] for r in s["runs"]] == ["SGDM", "AdaBound"], s["runs"]
PY
grep -q "paper: best test_acc" "$tmp/straight/summary.md" || fail "no paper column in summary.md"
grep -q "not comparable" "$tmp/straight/summary.md" || fail "summary.md does not say the run is not comparable"
# The specs carry the reference hyperparameters (weight decay 5e-4 for all; Adam's betas 0.99 for ResNets).
grep -q '"spec":"adabound:lr=1e-3,final_lr=0.1,gamma=1e-3,weight_decay=0.0005"' "$tmp/straight/adabound.jsonl" ||
  fail "AdaBound's spec: $(head -c 200 "$tmp/straight/adabound.jsonl")"

expect_error() {  # expect_error PATTERN ARGS...: exit code 2 and PATTERN in the output
  local pattern=$1 rc=0
  shift
  "$cifar" "$@" > "$tmp/bad" 2>&1 || rc=$?
  [ $rc -eq 2 ] && grep -q -- "$pattern" "$tmp/bad" || { cat "$tmp/bad"; fail "expected exit 2 and '$pattern' (rc $rc) for: $*"; }
}
expect_error "expected 10000" --data "$tmp/data" --dataset cifar10 --epochs 1 --out "$tmp/x"
expect_error "expected resnet20, resnet34 or densenet121" --model resnet99 --data "$tmp/data" --out "$tmp/x"
expect_error "lacks data_batch_1.bin" --dataset cifar10 --data "$tmp/nothing" --out "$tmp/x"
expect_error "--batch 0: must be at least 1" --data "$tmp/data" --records-per-file 0 --batch 0 --out "$tmp/x"
python3 - "$tmp/data/data_batch_4.bin" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[3073 * 5] = 12  # record 5's label
open(p, "wb").write(b)
PY
expect_error "data_batch_4.bin: label out of range: record 5" "${common[@]}" --epochs 1 --out "$tmp/x"
python3 "$(dirname "$0")/make_cifar_data.py" "$tmp/data2" 32
head -c 1000 "$tmp/data2/test_batch.bin" > "$tmp/t" && mv "$tmp/t" "$tmp/data2/test_batch.bin"
expect_error "test_batch.bin: 1000 bytes is not a multiple" --data "$tmp/data2" --dataset cifar10 --records-per-file 0 --out "$tmp/x"
echo "cifar end to end: ok"
