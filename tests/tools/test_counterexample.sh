#!/usr/bin/env bash
# The counterexample program at a small size (C = 100, beta2 = 0.9, lr 0.1, 10k steps, ~1 s): the JSON lines
# and summaries have the documented structure, the regret bookkeeping is consistent, and the qualitative
# result holds on the deterministic problem: Adam ends in the upper half of [-1, 1], AMSGrad, AdaBound and
# AMSBound (and SGD) at x* = -1. Bad flags exit with code 2 and a message.
# Usage: test_counterexample.sh COUNTEREXAMPLE_BINARY
set -euo pipefail
prog=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$prog" --steps 10000 --C 100 --beta2 0.9 --lr 0.1 --stoch-C 20 --every 50 --out "$tmp/out" > "$tmp/log" 2>&1 ||
  { echo "FAIL: the run failed"; cat "$tmp/log"; exit 1; }
grep -q "| Adam |" "$tmp/log" || { echo "FAIL: no table on stdout"; cat "$tmp/log"; exit 1; }
grep -q "## deterministic" "$tmp/out/summary.md" && grep -q "## stochastic" "$tmp/out/summary.md" ||
  { echo "FAIL: summary.md lacks a problem"; cat "$tmp/out/summary.md"; exit 1; }

python3 - "$tmp/out" <<'PY'
import json, os, sys
d = sys.argv[1]
s = json.load(open(os.path.join(d, "summary.json")))
assert s["steps"] == 10000, s
names = ["SGD", "Adam", "AMSGrad", "AdaBound", "AMSBound"]
problems = {p["problem"]: p for p in s["problems"]}
assert set(problems) == {"deterministic", "stochastic"}, problems.keys()
for name, p in problems.items():
    assert [r["optimizer"] for r in p["runs"]] == names, p["runs"]
    assert p["x_star"] == -1, p
    for r in p["runs"]:
        rows = [json.loads(l) for l in open(r["trajectory"])]
        # step 0 (the start), every 50 steps, and the last step
        assert [x["step"] for x in rows] == list(range(0, 10001, 50)), (r["optimizer"], len(rows))
        assert all(x["problem"] == name and x["optimizer"] == r["optimizer"] for x in rows)
        assert rows[0]["x"] == 0 and rows[0]["avg_regret"] is None
        assert all(-1 <= x["x"] <= 1 for x in rows), "left the feasible set"
        last = rows[-1]
        assert abs(last["x"] - r["final_x"]) < 1e-15 and abs(last["regret"] - r["regret"]) < 1e-9
        assert abs(r["avg_regret"] - r["regret"] / 10000) < 1e-12
final = {r["optimizer"]: r["final_x"] for r in problems["deterministic"]["runs"]}
regret = {r["optimizer"]: r["avg_regret"] for r in problems["deterministic"]["runs"]}
assert final["Adam"] > 0.5, final
for n in ("SGD", "AMSGrad", "AdaBound", "AMSBound"):
    assert final[n] < -0.99, final
    assert regret[n] < regret["Adam"] / 3, regret
PY

set +e
"$prog" --C 2 --out "$tmp/x" > "$tmp/bad" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "C >= 3" "$tmp/bad" || { echo "FAIL: --C 2 was not refused clearly (rc $rc)"; cat "$tmp/bad"; exit 1; }
set +e
"$prog" --optim "adam:lr=-1" --steps 10 --out "$tmp/x" > "$tmp/bad" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "lr" "$tmp/bad" || { echo "FAIL: a negative lr was not refused clearly (rc $rc)"; cat "$tmp/bad"; exit 1; }
set +e
"$prog" --problem sideways --out "$tmp/x" > "$tmp/bad" 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "deterministic or stochastic" "$tmp/bad" || { echo "FAIL: a bad --problem was not refused (rc $rc)"; cat "$tmp/bad"; exit 1; }
echo "counterexample: ok"
