#!/usr/bin/env bash
# tools/paths and tools/plot paths (the figures of docs/optimizers.md): the program's JSON lines hold, for each
# of the three functions, six trajectories that start at the function's start, stay finite and end lower than
# they began and much closer to the minimum, and an AdaBound bounds run whose applied rates lie
# within its bounds and whose bounds close in on final_lr; then tools/plot paths draws two valid PNGs, and bad
# input gets exit code 2. The plotting part is skipped (exit 77) when /usr/bin/python3 has no matplotlib.
# Usage: test_paths.sh SOURCE_ROOT PATHS_BINARY
set -euo pipefail
root=$1 prog=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$prog" --out "$tmp/paths.jsonl" --bound-steps 5000
python3 - "$tmp/paths.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
functions = {r["function"]: r for r in rows if r["kind"] == "function"}
assert sorted(functions) == ["quadratic", "rosenbrock", "saddle"], sorted(functions)
for name, fn in functions.items():
    paths = [r for r in rows if r["kind"] == "path" and r["function"] == name]
    assert [p["optimizer"] for p in paths] == ["SGDM", "AdaGrad", "Adam", "AMSGrad", "AdaBound", "AMSBound"], name
    g = fn["grid"]
    assert len(g["f"]) == len(g["y"]) and all(len(row) == len(g["x"]) for row in g["f"]), name
    for p in paths:
        who = f"{name}/{p['optimizer']} ({p['spec']})"
        assert len(p["x"]) == len(p["y"]) == len(p["f"]) == fn["steps"] + 1, who
        assert [p["x"][0], p["y"][0]] == fn["start"], who
        assert all(math.isfinite(v) for v in p["x"] + p["y"] + p["f"]), who
        gap0, gap1 = p["f"][0] - fn["fmin"], p["f"][-1] - fn["fmin"]
        assert gap1 < 1e-2 * gap0, f"{who}: f - fmin went from {gap0} to only {gap1}"
        d0, d1 = (math.hypot(p["x"][i] - fn["minimum"][0], p["y"][i] - fn["minimum"][1]) for i in (0, -1))
        assert d1 < 0.25 * d0, f"{who}: from {d0} to {d1} away from the minimum"
    # the spec each run used: the six differ (not one optimizer under six names)
    assert len({p["spec"] for p in paths}) == 6, name
bounds = [r for r in rows if r["kind"] == "bounds"]
assert len(bounds) == 1 and bounds[0]["spec"].startswith("adabound:")
steps = bounds[0]["steps"]
assert steps[0]["step"] == 1 and steps[-1]["step"] == 5000 and len(steps) > 50
for s in steps:
    for k in ("x", "y"):
        assert s["lower"] * (1 - 1e-12) <= s["clipped_" + k] <= s["upper"] * (1 + 1e-12), s
        # the rate applied is the rate before clipping, clipped
        assert math.isclose(s["clipped_" + k], min(max(s["rate_" + k], s["lower"]), s["upper"]), rel_tol=1e-12), s
first, last = steps[0], steps[-1]
assert last["upper"] - last["lower"] < 0.01 * (first["upper"] - first["lower"]), (first, last)
print("paths: JSON ok")
PY

set +e
"$prog" --function nowhere > /dev/null 2> "$tmp/bad"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "expected quadratic, rosenbrock or saddle" "$tmp/bad" || { echo "FAIL: unknown function (rc $rc)"; cat "$tmp/bad"; exit 1; }

/usr/bin/python3 -c "import matplotlib" 2>/dev/null || { echo "SKIP (plotting): /usr/bin/python3 has no matplotlib"; exit 77; }
/usr/bin/python3 "$root/tools/plot" paths "$tmp/paths.jsonl" -o "$tmp/png" > /dev/null
/usr/bin/python3 - "$tmp/png/optimizer_paths.png" "$tmp/png/adabound_rates.png" <<'PY'
import struct, sys
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, path
    w, h = struct.unpack(">II", data[16:24])
    assert 600 <= w <= 4000 and 400 <= h <= 4000, (path, w, h)
    assert len(data) > 10000, (path, len(data))  # a drawn figure, not an empty canvas
    assert data[-8:-4] == b"IEND", f"{path}: truncated"
PY
head -n 1 "$tmp/paths.jsonl" > "$tmp/partial.jsonl"
set +e
/usr/bin/python3 "$root/tools/plot" paths "$tmp/partial.jsonl" > "$tmp/bad" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "expected the function, path and bounds lines" "$tmp/bad" || { echo "FAIL: partial input (rc $rc)"; cat "$tmp/bad"; exit 1; }
echo "paths: ok"
