#!/usr/bin/env bash
# datasets/kjv_to_ptb.py on a few made-up verses: PTB style (lower case, 's split off, punctuation and other
# apostrophes removed, numbers as N, " w1 ... wn " lines), the split by blocks of 100 verses (block mod 20 = 18:
# valid, 19: test), the vocabulary cut with <unk>; and its refusals. Then the C++ reader takes the result.
# Usage: test_kjv.sh SOURCE_ROOT PTB_BINARY
set -euo pipefail
root=$1 ptb=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
python3 - "$tmp/verses" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for k in range(2000):
        if k == 0:
            f.write("Ge1:1 In the beginning God created the heaven and the earth.\n")
        elif k == 1:
            f.write("Ge1:2 And the king's sons' horses, 12 of them; (all) went: \"Selah!\"\n")
        else:
            f.write(f"1Sm{k // 50 + 1}:{k % 50 + 1} And the LORD spake unto verse{k % 7} word{k % 300}.\n")
PY
python3 "$root/datasets/kjv_to_ptb.py" "$tmp/verses" "$tmp/out" 2> "$tmp/log" && fail "a short file was accepted without --any-size"
grep -q "expected the whole Bible" "$tmp/log" || fail "no message for a short file"
python3 "$root/datasets/kjv_to_ptb.py" "$tmp/verses" "$tmp/out" --any-size 2> "$tmp/log" || { cat "$tmp/log"; fail "conversion"; }
head -n 2 "$tmp/out/ptb.train.txt" > "$tmp/head"
printf ' in the beginning god created the heaven and the earth \n and the king '"'"'s sons horses N of them all went selah \n' > "$tmp/want"
diff "$tmp/head" "$tmp/want" || fail "PTB style of the first verses"
[ "$(wc -l < "$tmp/out/ptb.train.txt")" -eq 1800 ] && [ "$(wc -l < "$tmp/out/ptb.valid.txt")" -eq 100 ] &&
  [ "$(wc -l < "$tmp/out/ptb.test.txt")" -eq 100 ] || fail "split: $(wc -l "$tmp"/out/ptb.*.txt)"
[ "$(head -n 1 "$tmp/out/ptb.valid.txt")" = " and the lord spake unto verse1 word0 " ] ||
  fail "verse 1800 (the first of block 18) does not open valid"
python3 "$root/datasets/kjv_to_ptb.py" "$tmp/verses" "$tmp/small" --vocab 20 --any-size 2> "$tmp/log" || { cat "$tmp/log"; fail "conversion"; }
python3 - "$tmp/small" <<'PY'
import sys, os
words = set()
for n in ("train", "valid", "test"):
    for line in open(os.path.join(sys.argv[1], f"ptb.{n}.txt")):
        assert line.startswith(" ") and line.endswith(" \n"), line
        words.update(line.split())
assert "<unk>" in words and len(words) == 19, len(words)  # the 18 most frequent words + <unk>
PY
head -n 1 "$tmp/out/README" | grep -q "datasets/kjv_to_ptb.py, version 1" || fail "README stamp"
OMP_WAIT_POLICY=passive "$ptb" --dataset kjv --kjv "$tmp/out" --layers 1 --emb 8 --hidden 8 --epochs 1 --threads 1 \
  --optim sgd --train-tokens 3000 --eval-tokens 500 --out "$tmp/run" > "$tmp/runlog" 2>&1 || { cat "$tmp/runlog"; fail "ptb on the KJV layout"; }
grep -q "running on the King James Bible" "$tmp/runlog" || fail "the KJV substitution was not said"
grep -q '"dataset": "kjv"' "$tmp/run/summary.json" || fail "summary does not name the KJV"
echo "kjv conversion: ok"
