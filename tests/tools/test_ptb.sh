#!/usr/bin/env bash
# End to end: the ptb replication program on a small generated PTB-layout corpus: two optimizers, a 2-layer
# LSTM with dropout; JSON lines with perplexities and a summary; resuming after epoch 2 gives the JSON lines
# and the final checkpoints (model and optimizer state, every tensor bit for bit) of a straight 3-epoch run.
# Bad input exits with code 2 and a message naming the problem.
# Usage: test_ptb.sh PTB_BINARY
set -euo pipefail
ptb=$1
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

python3 "$here/make_text_corpus.py" "$tmp/data"
common=(--data "$tmp/data" --layers 2 --emb 12 --hidden 16 --bptt 7 --batch 4 --eval-batch 3 --dropout 0.3
        --threads 1 --optim sgd --optim "adabound:lr=1e-2,final_lr=5" --milestones 2)
"$ptb" "${common[@]}" --epochs 3 --out "$tmp/straight" > "$tmp/log1" 2>&1 || { cat "$tmp/log1"; fail "straight run"; }
"$ptb" "${common[@]}" --epochs 2 --out "$tmp/resumed" > "$tmp/log2" 2>&1 || { cat "$tmp/log2"; fail "first part"; }
"$ptb" "${common[@]}" --epochs 3 --out "$tmp/resumed" --resume > "$tmp/log3" 2>&1 || { cat "$tmp/log3"; fail "resume"; }
grep -q "resumed from" "$tmp/log3" || fail "the second part did not say it resumed"

python3 - "$tmp/straight" "$tmp/resumed" <<'PY'
import json, math, os, struct, sys
a, b = sys.argv[1], sys.argv[2]

def lines(path):
    out = []
    for l in open(path):
        j = json.loads(l)
        for k in ("seconds", "tokens_per_s", "epochs"):  # timings, and the --epochs of the run that wrote it
            j.pop(k)
        out.append(j)
    return out

def tensors(path):  # safetensors: name -> raw bytes (the metadata holds timings, so it is not compared)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}

for label in ("sgd", "adabound"):
    la, lb = lines(os.path.join(a, label + ".jsonl")), lines(os.path.join(b, label + ".jsonl"))
    assert len(la) == 3, (label, len(la))
    assert la == lb, f"{label}: resumed JSON lines differ\n{la}\n{lb}"
    for e in la:
        for k in ("train_loss", "train_ppl", "valid_ppl", "test_ppl", "lr"):
            assert isinstance(e[k], float) and math.isfinite(e[k]), (label, k, e)
        assert abs(e["valid_ppl"] - math.exp(e["valid_loss"])) < 1e-9 * e["valid_ppl"], e
    assert la[2]["lr"] < la[1]["lr"], f"{label}: no lr decay after the milestone: {[e['lr'] for e in la]}"
    ta, tb = tensors(os.path.join(a, label + ".ckpt")), tensors(os.path.join(b, label + ".ckpt"))
    assert ta.keys() == tb.keys(), (sorted(ta), sorted(tb))
    assert any(k.startswith("optim.") and k.endswith("exp_avg") for k in ta) or label == "sgd", sorted(ta)
    for k in ta:
        assert ta[k] == tb[k], f"{label}: checkpoint tensor {k} differs after resuming"
s = json.load(open(os.path.join(a, "summary.json")))
assert s["dataset"] == "ptb" and s["layers"] == 2 and [r["optimizer"] for r in s["runs"]] == ["SGD", "AdaBound"], s
# a uniform guess has perplexity = vocabulary size; both learned the grammar's structure
assert all(r["best_test_ppl"] < 0.8 * s["vocab"] for r in s["runs"]), (s["vocab"], [r["best_test_ppl"] for r in s["runs"]])
PY
grep -q "test_ppl" "$tmp/straight/summary.md" || fail "no perplexity table in summary.md"

# The divergence guard of the driver: a NaN injected into a gradient at step 5 (of each optimizer) stops it before
# its update, naming the step, the parameter and the optimizer; no checkpoint is written; exit code 3.
set +e
"$ptb" "${common[@]}" --epochs 1 --debug-nan-at 5 --out "$tmp/nan" > "$tmp/lognan" 2>&1
rc=$?
set -e
[ $rc -eq 3 ] || { cat "$tmp/lognan"; fail "--debug-nan-at 5 exited $rc, expected 3"; }
grep -q "step 5 .*optimizer SGD.*'encoder.weight'" "$tmp/lognan" || { cat "$tmp/lognan"; fail "the NaN was not named"; }
grep -q "step 5 .*optimizer AdaBound" "$tmp/lognan" || fail "the second optimizer did not run after the first stopped"
[ ! -e "$tmp/nan/sgd.ckpt" ] || fail "a checkpoint was written for a run that stopped in its first epoch"

bad() {  # expected-message args...
  local want=$1
  shift
  set +e
  "$ptb" "$@" > "$tmp/bad" 2>&1
  local rc=$?
  set -e
  [ $rc -eq 2 ] && grep -q -- "$want" "$tmp/bad" || { cat "$tmp/bad"; fail "'$*' exited $rc, expected 2 and '$want'"; }
}
mkdir -p "$tmp/partial" && cp "$tmp/data/ptb.train.txt" "$tmp/data/ptb.valid.txt" "$tmp/partial/"
bad "lacks ptb.test.txt" --data "$tmp/partial" --dataset ptb --out "$tmp/x"
python3 "$here/make_text_corpus.py" "$tmp/nounk" --no-unk
bad "ptb.valid.txt: line 4: the word 'zebra' is not in the vocabulary" --data "$tmp/nounk" --out "$tmp/x"
bad "too few for batch size" --data "$tmp/data" --train-tokens 30 --batch 20 --out "$tmp/x"
bad "--layers 0" --data "$tmp/data" --layers 0 --out "$tmp/x"
bad "--tie needs" --data "$tmp/data" --tie --emb 8 --hidden 16 --out "$tmp/x"
bad "run datasets/fetch kjv" --dataset kjv --kjv "$tmp/nowhere" --out "$tmp/x"
bad "lr" --data "$tmp/data" --optim "adam:lr=-1" --out "$tmp/x"
echo "ptb end to end: ok"
