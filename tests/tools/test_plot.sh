#!/usr/bin/env bash
# tools/plot draws valid PNGs: learning curves from mnist-style JSON lines, AdaBound's bounds, and the
# counterexample's x_t / R_t/t panels (from a small run of the program). Checks the PNG signature, the
# IHDR chunk and a plausible size. Skipped (exit 77) when /usr/bin/python3 has no matplotlib.
# Usage: test_plot.sh SOURCE_ROOT COUNTEREXAMPLE_BINARY
set -euo pipefail
root=$1 prog=$2
/usr/bin/python3 -c "import matplotlib" 2>/dev/null || { echo "SKIP: /usr/bin/python3 has no matplotlib"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
plot() { /usr/bin/python3 "$root/tools/plot" "$@"; }

mkdir "$tmp/mnist"
python3 - "$tmp/mnist" <<'PY'
import json, math, os, sys
d = sys.argv[1]
for k, name in enumerate(["SGDM", "AdaBound"]):
    with open(os.path.join(d, name.lower() + ".jsonl"), "w") as f:
        for e in range(1, 6):
            f.write(json.dumps({"optimizer": name, "epoch": e, "train_loss": 1 / (e + k), "train_acc": 1 - 0.5 / (e + k),
                                "test_loss": 1.2 / (e + k), "test_acc": 1 - 0.6 / (e + k), "seconds": 1.0}) + "\n")
json.dump({"dataset_title": "MNIST", "hidden": 256, "batch": 128}, open(os.path.join(d, "summary.json"), "w"))
q = lambda a: {k: a * f for k, f in zip(("min", "p5", "p25", "median", "p75", "p95", "max"), (0.5, 0.6, 0.8, 1, 1.2, 1.5, 2))}
with open(os.path.join(d, "telemetry.jsonl"), "w") as f:
    for t in range(10, 1001, 10):
        lo, hi = 0.1 * (1 - 1 / (1e-3 * t + 1)), 0.1 * (1 + 1 / (1e-3 * t))
        for name, n in (("fc1.weight", 1000), ("fc1.bias", 10)):
            f.write(json.dumps({"optimizer": "AdaBound", "epoch": 1, "step": t, "param": name, "numel": n,
                                "lr": q(0.05), "lr_unclamped": q(0.05), "lower_bound": lo, "upper_bound": hi,
                                "frac_at_lower": min(1, t / 1000), "frac_at_upper": 0.01}) + "\n")
PY
plot curves "$tmp/mnist" > /dev/null
plot curves "$tmp/mnist" -o "$tmp/c2.png" > /dev/null
plot bounds --final-lr 0.1 --gamma 1e-3 --steps 1000 -o "$tmp/bounds.png" > /dev/null
plot bounds --final-lr 0.1 --gamma 1e-3 --steps 1000 --telemetry "$tmp/mnist/telemetry.jsonl" -o "$tmp/tb.png" > /dev/null
"$prog" --steps 2000 --C 100 --beta2 0.9 --lr 0.1 --every 20 --out "$tmp/ce" > /dev/null
plot counterexample "$tmp/ce" > /dev/null

/usr/bin/python3 - "$tmp/mnist/curves.png" "$tmp/c2.png" "$tmp/bounds.png" "$tmp/tb.png" "$tmp/ce/deterministic.png" "$tmp/ce/stochastic.png" <<'PY'
import struct, sys
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, path
    w, h = struct.unpack(">II", data[16:24])
    assert 400 <= w <= 4000 and 300 <= h <= 4000, (path, w, h)
    assert len(data) > 10000, (path, len(data))  # a drawn figure, not an empty canvas
    assert data[-8:-4] == b"IEND", f"{path}: truncated"
PY

set +e
plot curves "$tmp/ce" > "$tmp/bad" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "no per-epoch" "$tmp/bad" || { echo "FAIL: curves of a directory without epochs (rc $rc)"; cat "$tmp/bad"; exit 1; }
echo "plot: ok"
