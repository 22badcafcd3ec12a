#!/usr/bin/env bash
# The paper's figure 1, tiny: ResNet-20 trained 2 epochs with Adam on generated CIFAR-format data, then
# tools/lr_heatmap on its checkpoint. The JSON holds nine 3x3 kernels from nine different conv layers (the
# first and the last included) and the 10-element linear bias; every rate is recomputed here from the
# checkpoint's Adam state (lr / (1 - b1^t) / (sqrt(v) / sqrt(1 - b2^t) + eps)); the counts beyond the
# thresholds match the values. tools/plot heatmap draws a valid PNG. A non-Adam checkpoint and a missing
# one are refused with exit code 2. The PNG part is skipped (exit 77) when /usr/bin/python3 has no matplotlib.
# Usage: test_lr_heatmap.sh SOURCE_ROOT CIFAR_BINARY LR_HEATMAP_BINARY
set -euo pipefail
root=$1 cifar=$2 heatmap=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

python3 "$root/tests/tools/make_cifar_data.py" "$tmp/data" 32
"$cifar" --data "$tmp/data" --records-per-file 0 --train-limit 0 --test-limit 0 --batch 32 --eval-batch 100 \
  --threads 1 --optim adam --optim sgdm --epochs 2 --lr-decay 1 --out "$tmp/run" > "$tmp/log" 2>&1 ||
  { cat "$tmp/log"; fail "training"; }
"$heatmap" --checkpoint "$tmp/run/adam.ckpt" > "$tmp/log" 2>&1 || { cat "$tmp/log"; fail "lr_heatmap"; }
[ -f "$tmp/run/lr_heatmap.json" ] || fail "no lr_heatmap.json beside the checkpoint"

python3 - "$tmp/run/lr_heatmap.json" "$tmp/run/adam.ckpt" <<'PY'
import json, math, struct, sys
h = json.load(open(sys.argv[1]))
data = open(sys.argv[2], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
def tensor(name):
    e = header[name]
    raw = data[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]]
    fmt = {"F32": "f", "F64": "d"}[e["dtype"]]
    return list(struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw)), e["shape"]

assert h["model"] == "resnet20" and h["dataset"] == "cifar10" and h["epoch"] == 2, h
assert h["optimizer"].startswith("adam:lr=0.001,betas=0.99/0.999,eps=1e-08,weight_decay=0.0005"), h["optimizer"]
assert h["step"] == 2 * 5, h["step"]  # 160 images / 32 per batch, 2 epochs
assert h["low"] == 0.01 and h["high"] == 1000, h
ks = h["kernels"]
assert len(ks) == 9, len(ks)
assert len({k["param"] for k in ks}) == 9, "nine different conv layers"
assert ks[0]["param"] == "conv1.weight" and ks[-1]["param"] == "layer3.2.conv2.weight", (ks[0], ks[-1])
layers = [k["layer"] for k in ks]
assert layers == sorted(layers) and layers[-1] == h["conv_layers"] == 19, layers
assert h["bias"]["param"] == "linear.bias" and len(h["bias"]["lr"]) == 10, h["bias"]

lr = tensor("optim.lr")[0][0]
b1, b2, eps = 0.99, 0.999, 1e-8
def rate(index, flat):
    v, shape = tensor("optim.%d.exp_avg_sq" % index)
    t = tensor("optim.%d.step" % index)[0][0]
    return lr / (1 - b1 ** t) / (math.sqrt(v[flat]) / math.sqrt(1 - b2 ** t) + eps), shape
values = []
for k in ks:
    assert len(k["lr"]) == 3 and all(len(r) == 3 for r in k["lr"]), k
    for r in range(3):
        for c in range(3):
            _, shape = rate(k["param_index"], 0)
            assert shape[2:] == [3, 3] and 0 <= k["out_channel"] < shape[0] and 0 <= k["in_channel"] < shape[1], (k, shape)
            want, _ = rate(k["param_index"], ((k["out_channel"] * shape[1] + k["in_channel"]) * 3 + r) * 3 + c)
            got = k["lr"][r][c]
            assert abs(got - want) <= 1e-6 * want, (k["param"], r, c, got, want)
            values.append(got)
for j, got in enumerate(h["bias"]["lr"]):
    want, _ = rate(h["bias"]["param_index"], j)
    assert abs(got - want) <= 1e-6 * want, ("bias", j, got, want)
    values.append(got)
s = h["sampled"]
assert s["count"] == 91 == len(values), s
assert s["below_low"] == sum(v < 0.01 for v in values) and s["above_high"] == sum(v > 1000 for v in values), s
assert s["min"] == min(values) and s["max"] == max(values), s
a = h["all_elements"]
assert a["count"] == 269722 and 0 <= a["below_low_fraction"] <= 1 and 0 <= a["above_high_fraction"] <= 1, a
PY

rc=0
"$heatmap" --checkpoint "$tmp/run/sgdm.ckpt" --out "$tmp/x.json" > "$tmp/bad" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q "no per-element effective learning rate" "$tmp/bad" || { cat "$tmp/bad"; fail "SGDM checkpoint (rc $rc)"; }
rc=0
"$heatmap" --checkpoint "$tmp/none.ckpt" > "$tmp/bad" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q "none.ckpt" "$tmp/bad" || { cat "$tmp/bad"; fail "missing checkpoint (rc $rc)"; }

/usr/bin/python3 -c "import matplotlib" 2>/dev/null || { echo "SKIP (the PNG): /usr/bin/python3 has no matplotlib"; exit 77; }
/usr/bin/python3 "$root/tools/plot" heatmap "$tmp/run/lr_heatmap.json" > /dev/null
/usr/bin/python3 - "$tmp/run/lr_heatmap.png" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
length, kind = struct.unpack(">I4s", data[8:16])
assert kind == b"IHDR" and length == 13
w, h = struct.unpack(">II", data[16:24])
assert 800 <= w <= 4000 and 300 <= h <= 2000, (w, h)
assert len(data) > 20000 and data[-8:-4] == b"IEND", len(data)
PY
echo '{"low": 0.01}' > "$tmp/bad.json"
rc=0
/usr/bin/python3 "$root/tools/plot" heatmap "$tmp/bad.json" > "$tmp/bad" 2>&1 || rc=$?
[ $rc -eq 2 ] && grep -q "not the JSON of tools/lr_heatmap" "$tmp/bad" || { cat "$tmp/bad"; fail "bad heatmap JSON (rc $rc)"; }
echo "lr heatmap: ok"
