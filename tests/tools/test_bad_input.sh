#!/usr/bin/env bash
# Runs every row of docs/bad-input.md: each command must exit with the code the table gives and print the
# message it gives. The table is the documentation; this keeps it true.
# Usage: test_bad_input.sh SOURCE_ROOT BUILD_TOOLS_DIR
set -euo pipefail
root=$1 bin=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=passive

data=$tmp/data bad=$tmp/bad ckpt=$tmp/ckpt text=$tmp/text cifar=$tmp/cifar
python3 "$root/tests/tools/make_mnist_data.py" "$data"
python3 "$root/tests/tools/make_cifar_data.py" "$cifar" 32
python3 "$root/tests/tools/make_text_corpus.py" "$text"
python3 - "$data" "$bad" <<'PY'
import gzip, os, shutil, struct, sys
data, bad = sys.argv[1], sys.argv[2]
def variant(name, edit):
    d = os.path.join(bad, name)
    shutil.copytree(data, d)
    edit(d)
def raw(d, f):
    with gzip.open(os.path.join(d, f)) as g: return g.read()
def put(d, f, b):
    with gzip.open(os.path.join(d, f), "wb") as g: g.write(b)
TI, TL = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
variant("no-test-labels", lambda d: os.remove(os.path.join(d, "t10k-labels-idx1-ubyte.gz")))
variant("truncated", lambda d: put(d, TI, raw(d, TI)[:-1000]))
variant("swapped", lambda d: put(d, TI, raw(d, TL)))
variant("count-mismatch", lambda d: put(d, TL, struct.pack(">II", 0x801, 599) + raw(d, TL)[8:-1]))
variant("label-12", lambda d: put(d, TL, raw(d, TL)[:8 + 5] + bytes([12]) + raw(d, TL)[8 + 6:]))
variant("trailing", lambda d: put(d, TL, raw(d, TL) + b"\0"))
variant("empty", lambda d: (put(d, TI, struct.pack(">IIII", 0x803, 0, 28, 28)), put(d, TL, struct.pack(">II", 0x801, 0))))
PY
python3 "$root/tests/tools/make_text_corpus.py" "$bad/text-no-unk" --no-unk
python3 - "$text" "$bad" <<'PY'
import os, shutil, sys
text, bad = sys.argv[1], sys.argv[2]
def variant(name, edit):
    d = os.path.join(bad, name)
    shutil.copytree(text, d)
    edit(d)
def write(d, f, b):
    with open(os.path.join(d, f), "wb") as g: g.write(b)
variant("text-no-test", lambda d: os.remove(os.path.join(d, "ptb.test.txt")))
variant("text-empty-train", lambda d: write(d, "ptb.train.txt", b""))
variant("text-binary", lambda d: write(d, "ptb.train.txt", b" a b \n c d \n e \x00 f \n"))
PY
python3 - "$cifar" "$bad" <<'PY'
import os, shutil, sys
cifar, bad = sys.argv[1], sys.argv[2]
def variant(name, edit):
    d = os.path.join(bad, name)
    shutil.copytree(cifar, d)
    edit(d)
def edit(d, f, change):
    p = os.path.join(d, f)
    b = change(bytearray(open(p, "rb").read()))
    open(p, "wb").write(bytes(b))
def set_label(b):
    b[3073 * 5] = 10
    return b
variant("cifar-no-test", lambda d: os.remove(os.path.join(d, "test_batch.bin")))
variant("cifar-truncated", lambda d: edit(d, "data_batch_2.bin", lambda b: b[:-100]))
variant("cifar-label-10", lambda d: edit(d, "data_batch_3.bin", set_label))
variant("cifar-empty", lambda d: edit(d, "data_batch_5.bin", lambda b: b""))
PY
"$bin/mnist" --data "$data" --dataset mnist --hidden 32 --optim sgdm --epochs 1 --out "$ckpt" > "$tmp/ckpt.log" 2>&1 ||
  { echo "FAIL: the run that writes the checkpoint"; cat "$tmp/ckpt.log"; exit 1; }
cp -r "$ckpt" "$bad/corrupt-ckpt"
python3 - "$bad/corrupt-ckpt/sgdm.ckpt" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0xFF
open(p, "wb").write(bytes(b))
PY

rows=0 failed=0
while IFS=$'\t' read -r num cmd code msg; do
  rows=$((rows + 1))
  out=$tmp/out-$num
  cmd=${cmd//'$BIN'/$bin}; cmd=${cmd//'$DATA'/$data}; cmd=${cmd//'$BAD'/$bad}
  cmd=${cmd//'$OUT'/$out}; cmd=${cmd//'$CKPT'/$ckpt}; cmd=${cmd//'$TEXT'/$text}; cmd=${cmd//'$CIFAR'/$cifar}
  cmd=${cmd//'$TUNE'/"/usr/bin/python3 $root/tools/tune --bin $bin"}
  set +e
  timeout 300 bash -c "$cmd" > "$tmp/log-$num" 2>&1
  rc=$?
  set -e
  if [ "$rc" != "$code" ] || ! grep -qF -- "$msg" "$tmp/log-$num"; then
    echo "FAIL row $num: exit $rc (expected $code), message '$msg' $(grep -qF -- "$msg" "$tmp/log-$num" && echo found || echo 'not found'):"
    echo "  $cmd"; sed 's/^/  | /' "$tmp/log-$num" | tail -5
    failed=$((failed + 1))
  fi
done < <(python3 - "$root/docs/bad-input.md" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    m = re.match(r"\|\s*(\d+)\s*\|[^|]*\|\s*`([^`]*)`\s*\|\s*(\d+)\s*\|\s*`([^`]*)`\s*\|\s*$", line)
    if m: print("\t".join(m.groups()))
PY
)
[ $rows -ge 20 ] || { echo "FAIL: only $rows rows read from docs/bad-input.md"; exit 1; }
[ $failed -eq 0 ] || { echo "$failed of $rows rows failed"; exit 1; }
echo "bad input: all $rows rows of docs/bad-input.md behave as documented"
