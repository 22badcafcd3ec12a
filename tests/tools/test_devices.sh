#!/usr/bin/env bash
# Checkpoints across devices, end to end: a cifar run written on one device resumes on another (cpu -> test
# device and back) and gives exactly the metric lines (timing aside) and checkpoint tensors of a straight CPU run
# (the test device runs the CPU kernels: exact); lr_heatmap reads the checkpoint on the test device alike; ptb
# on the test device gives the CPU's lines; the divergence guard stops a run on the test device naming the
# parameter. The banner says the device and why; --device cuda without a GPU is refused (exit 2) naming the flag.
# Usage: test_devices.sh CIFAR_BINARY LR_HEATMAP_BINARY PTB_BINARY
set -euo pipefail
cifar=$1 heatmap=$2 ptb=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

python3 "$(dirname "$0")/make_cifar_data.py" "$tmp/data" 16

common=(--data "$tmp/data" --dataset cifar10 --records-per-file 0 --train-limit 0 --test-limit 0 --batch 16
        --eval-batch 40 --threads 1 --optim adam --optim amsbound --milestones 1)
run() {  # run LOG ARGS...
  local log=$1; shift
  "$cifar" "${common[@]}" "$@" > "$log" 2>&1 || { cat "$log"; fail "cifar $*"; }
}
run "$tmp/straight.log" --epochs 2 --out "$tmp/straight" --device cpu
grep -q "^device: cpu (--device cpu), deterministic" "$tmp/straight.log" ||
  { cat "$tmp/straight.log"; fail "the banner does not say the device and why"; }
# auto: the GPU for the paper's data (CIFAR-10 format here) when there is one, else the CPU, said.
"$heatmap" --checkpoint "$tmp/straight/adam.ckpt" --out "$tmp/auto.json" > "$tmp/auto.log" 2>&1 ||
  { cat "$tmp/auto.log"; fail "lr_heatmap --device auto"; }
gpu=1
grep -q "^device: cpu (auto: no CUDA device), deterministic" "$tmp/auto.log" && gpu=0
[ $gpu = 0 ] || grep -q "^device: cuda (auto: a CUDA device and the paper's data)" "$tmp/auto.log" ||
  { cat "$tmp/auto.log"; fail "--device auto: neither the CPU without a GPU nor the GPU"; }
run "$tmp/a1.log" --epochs 1 --out "$tmp/cpu-test" --device cpu
run "$tmp/a2.log" --epochs 2 --out "$tmp/cpu-test" --device test --resume
grep -q "^device: test (--device test)" "$tmp/a2.log" || { cat "$tmp/a2.log"; fail "no device line for --device test"; }
grep -q "batches prefetched on a thread" "$tmp/a2.log" || { cat "$tmp/a2.log"; fail "no prefetch on the test device"; }
grep -q "resumed from .*adam.ckpt after epoch 1" "$tmp/a2.log" ||
  { cat "$tmp/a2.log"; fail "cpu -> test did not resume"; }
run "$tmp/b1.log" --epochs 1 --out "$tmp/test-cpu" --device test
run "$tmp/b2.log" --epochs 2 --out "$tmp/test-cpu" --device cpu --resume
grep -q "resumed from .*adam.ckpt after epoch 1" "$tmp/b2.log" ||
  { cat "$tmp/b2.log"; fail "test -> cpu did not resume"; }

python3 - "$tmp/straight" "$tmp/cpu-test" "$tmp/test-cpu" <<'PY'
import json, os, struct, sys
straight, others = sys.argv[1], sys.argv[2:]
TIMING = ("seconds", "images_per_s", "epochs")
def tensors(path):  # safetensors: u64 header length, JSON header, data; returns {name: bytes}
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    return {k: data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in header.items()}
for other in others:
    for name in ("adam", "amsbound"):
        a = [json.loads(l) for l in open(os.path.join(straight, name + ".jsonl"))]
        b = [json.loads(l) for l in open(os.path.join(other, name + ".jsonl"))]
        assert [j["epoch"] for j in a] == [1, 2] and [j["epoch"] for j in b] == [1, 2], (a, b)
        for x, y in zip(a, b):
            for k in TIMING:
                x.pop(k, None); y.pop(k, None)
            assert x == y, (other, name, x, y)
        ta, tb = tensors(os.path.join(straight, name + ".ckpt")), tensors(os.path.join(other, name + ".ckpt"))
        assert ta.keys() == tb.keys() and any(k.startswith("optim.") for k in ta), set(ta) ^ set(tb)
        diff = [k for k in ta if ta[k] != tb[k]]
        assert not diff, f"{other}/{name}: tensors differ from the straight CPU run: {diff[:5]}"
PY

# lr_heatmap reads a checkpoint on any device: the same rates.
"$heatmap" --checkpoint "$tmp/straight/adam.ckpt" --out "$tmp/cpu.json" --device cpu > /dev/null 2>&1 ||
  fail "lr_heatmap --device cpu"
"$heatmap" --checkpoint "$tmp/straight/adam.ckpt" --out "$tmp/test.json" --device test > /dev/null 2>&1 ||
  fail "lr_heatmap --device test"
cmp -s "$tmp/cpu.json" "$tmp/test.json" || fail "lr_heatmap: the test device's rates differ from the CPU's"

# The divergence guard on a device (checked there, one number to the host): the poisoned gradient is named.
set +e
"$cifar" "${common[@]}" --epochs 1 --optim sgdm --device test --debug-nan-at 3 --out "$tmp/nan" > "$tmp/nan.log" 2>&1
rc=$?
set -e
[ $rc = 3 ] || { cat "$tmp/nan.log"; fail "an injected NaN on the test device exited $rc, expected 3"; }
grep -q "step 3 (epoch 1, batch 3/5) of optimizer SGDM .*the gradient of parameter 'conv1.weight' holds NaN" \
  "$tmp/nan.log" || { cat "$tmp/nan.log"; fail "the guard's message on the test device"; }

# ptb on the test device: the CPU's lines (dropout masks included).
python3 "$(dirname "$0")/make_text_corpus.py" "$tmp/text"
lm=(--data "$tmp/text" --layers 2 --emb 12 --hidden 16 --bptt 7 --batch 4 --eval-batch 3 --dropout 0.3 --threads 1
    --optim "adabound:lr=1e-2,final_lr=5" --epochs 2)
"$ptb" "${lm[@]}" --device cpu --out "$tmp/ptb-cpu" > "$tmp/ptb1.log" 2>&1 || { cat "$tmp/ptb1.log"; fail "ptb cpu"; }
"$ptb" "${lm[@]}" --device test --out "$tmp/ptb-test" > "$tmp/ptb2.log" 2>&1 || { cat "$tmp/ptb2.log"; fail "ptb test"; }
strip() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    j = json.loads(l); [j.pop(k, None) for k in ("seconds", "tokens_per_s")]; print(json.dumps(j, sort_keys=True))' "$1"; }
diff <(strip "$tmp/ptb-cpu/adabound.jsonl") <(strip "$tmp/ptb-test/adabound.jsonl") ||
  fail "ptb on the test device differs from the CPU"

# --device cuda without a GPU: exit 2, the flag named; a device that does not exist: the same.
devices=(gpu)
[ $gpu = 0 ] && devices+=(cuda)
for prog in cifar heatmap; do
  cmd=("$heatmap" --checkpoint "$tmp/straight/adam.ckpt")
  [ $prog = cifar ] && cmd=("$cifar" "${common[@]}" --epochs 1 --out "$tmp/cuda")
  for dev in "${devices[@]}"; do
    set +e; "${cmd[@]}" --device $dev > "$tmp/err.log" 2>&1; code=$?; set -e
    [ $code = 2 ] || { cat "$tmp/err.log"; fail "$prog --device $dev: exit code $code, expected 2"; }
  done
done
if [ $gpu = 0 ]; then
  grep -q "no CUDA device" <("$cifar" "${common[@]}" --epochs 1 --out "$tmp/cuda" --device cuda 2>&1) ||
    fail "--device cuda without a GPU does not say 'no CUDA device'"
fi
grep -q "device 'gpu': expected cpu, cuda, test or auto" \
  <("$heatmap" --checkpoint "$tmp/straight/adam.ckpt" --device gpu 2>&1) ||
  fail "--device gpu: the message does not name the devices"
echo "devices: cpu -> test -> cpu resumes exact; lr_heatmap, ptb and the guard on the test device; cuda refused"
