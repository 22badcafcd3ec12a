#!/usr/bin/env bash
# tools/report builds REPORT.md from a small results tree made by tiny runs of every replication program
# (mnist, counterexample, cifar10, ptb at one depth, lr-heatmap, a tools/tune sweep) and their figures: every experiment that ran
# has its section with its command and table, the ones that did not are listed as not run, and every figure
# the report names exists and is a PNG of exactly the size the report states. Without matplotlib the runs, the
# report and its text checks still run (a report without figures names none), then the test exits 77 (skipped:
# the figures were not checked).
# Usage: test_report.sh SOURCE_ROOT MNIST CIFAR PTB COUNTEREXAMPLE LR_HEATMAP
set -euo pipefail
root=$1 mnist=$2 cifar=$3 ptb=$4 counterexample=$5 heatmap=$6
figures=1
/usr/bin/python3 -c "import matplotlib" 2>/dev/null || figures=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
plot() { [ $figures -eq 0 ] || /usr/bin/python3 "$root/tools/plot" "$@" > /dev/null || fail "tools/plot $*"; }
run() { "$@" > "$tmp/log" 2>&1 || { cat "$tmp/log"; fail "$*"; }; }
R=$tmp/results

python3 "$root/tests/tools/make_mnist_data.py" "$tmp/mnist-data"
python3 "$root/tests/tools/make_cifar_data.py" "$tmp/cifar-data" 16
python3 "$root/tests/tools/make_text_corpus.py" "$tmp/text"

run "$mnist" --data "$tmp/mnist-data" --dataset mnist --hidden 16 --epochs 2 --threads 1 --optim sgdm --optim adabound \
  --out "$R/mnist"
echo "tools/replicate mnist --hidden 16 --epochs 2" > "$R/mnist/command.txt"
plot curves "$R/mnist"
run "$counterexample" --steps 2000 --C 100 --beta2 0.9 --lr 0.1 --every 20 --out "$R/counterexample"
plot counterexample "$R/counterexample"
cifar_flags=(--data "$tmp/cifar-data" --dataset cifar10 --records-per-file 0 --train-limit 0 --test-limit 0 --batch 32
             --eval-batch 50 --threads 1)
run "$cifar" "${cifar_flags[@]}" --epochs 1 --optim sgdm --optim adam --out "$R/cifar10"
plot curves "$R/cifar10"
run "$ptb" --data "$tmp/text" --layers 1 --emb 12 --hidden 16 --bptt 7 --batch 4 --eval-batch 3 --threads 1 --epochs 2 \
  --optim sgd --optim adabound --out "$R/ptb/L1"
plot curves "$R/ptb/L1"
run "$cifar" "${cifar_flags[@]}" --epochs 1 --optim adam --lr-decay 1 --out "$R/lr-heatmap"
run "$heatmap" --checkpoint "$R/lr-heatmap/adam.ckpt" --out "$R/lr-heatmap/lr_heatmap.json"
plot heatmap "$R/lr-heatmap/lr_heatmap.json"
run /usr/bin/python3 "$root/tools/tune" mnist --bin "$(dirname "$mnist")" --optim sgdm --grid sgdm.lr=0.01,0.1 \
  --max-extensions 0 --epochs 1 --threads 1 --out "$R/tune/mnist" -- --data "$tmp/mnist-data" --dataset mnist --hidden 16

/usr/bin/python3 "$root/tools/report" "$R" > "$tmp/log" 2>&1 || { cat "$tmp/log"; fail "tools/report"; }
/usr/bin/python3 - "$R" $figures <<'PY'
import os, re, struct, sys
R, figures_drawn = sys.argv[1], sys.argv[2] == "1"
text = open(os.path.join(R, "REPORT.md")).read()
for heading in ("Perceptron on MNIST", "CIFAR-10", "1-layer LSTM", "counterexample", "effective learning rates"):
    assert re.search(r"^## .*" + re.escape(heading), text, re.M), f"no section for {heading}"
assert "tools/replicate mnist --hidden 16 --epochs 2" in text, "the mnist command is not shown"
assert re.search(r"No results for: .*ptb/L2, ptb/L3", text), "ptb/L2 and L3 should be listed as not run"
assert re.search(r"^## Hyperparameter tuning: mnist", text, re.M) and "### Chosen" in text, "no tuning section"
assert "tune/mnist/tune.png" in text, "the tuning section has no figure"
assert "95.03" in text, "the CIFAR section should give the paper's numbers"
figures = re.findall(r"^\*([^*]+\.png) \((\d+)x(\d+) px\)\*$", text, re.M)
links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
assert len(links) == len(figures), (figures, links)
assert len(figures) >= 7 if figures_drawn else not figures, figures
for (name, w, h), link in zip(figures, links):
    assert name == link, (name, link)
    with open(os.path.join(R, link), "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{link} is not a PNG"
    assert struct.unpack(">II", head[16:24]) == (int(w), int(h)), f"{link}: the report says {w}x{h}"
print(f"report: {len(figures)} figures" + (", all valid PNGs of the stated sizes" if figures else " (none drawn)"))
PY
[ $figures -eq 1 ] || { echo "SKIP (figures): the text checks passed; /usr/bin/python3 has no matplotlib to draw the figures"; exit 77; }
echo "report: ok"
