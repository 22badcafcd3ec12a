#!/usr/bin/env bash
# tools/tune end to end on the perceptron and a small generated MNIST-format data set, one epoch per run:
#   - a sweep of two optimizers, three grid points each: tune.md, tune.json (a chosen spec per optimizer that
#     optim::make accepts), tune.png; SGDM's best lr is the largest of its grid, so the grid grows and the
#     grown points run (--max-extensions 2), Adam's best is interior, so its grid does not;
#   - a point made to diverge (lr 1e12) is recorded as diverged and the sweep goes on;
#   - two seeds per point, chosen on the final training loss: mean and spread per point, the lowest mean chosen;
#   - a sweep killed after its second run resumes with the missing runs only and gives the straight table;
#     the same command on a finished sweep runs nothing and prints the table;
#   - two ranks (Open MPI's environment variables, as mpirun sets them) give the first sweep's table;
#   - --jobs 2 gives the same table as --jobs 1 (on two cores or more).
# Usage: test_tune.sh SOURCE_ROOT BUILD_TOOLS_DIR
set -euo pipefail
root=$1 bin=$2
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill -9 -- "-$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=passive
fail() { echo "FAIL: $*"; exit 1; }

python3 "$root/tests/tools/make_mnist_data.py" "$tmp/data"
tune() { /usr/bin/python3 "$root/tools/tune" mnist --bin "$bin" --epochs 1 --threads 1 "$@"; }
prog=(-- --data "$tmp/data" --dataset mnist --hidden 32 --batch 50)

# --- the sweep: two optimizers, three points each; SGDM's grid grows at its top edge
tune --optim sgdm,adam --grid sgdm.lr=1e-4,1e-3,1e-2 --grid adam.lr=1e-3,1e-2,0.1 --grid adam.beta1=0.9 \
  --grid adam.beta2=0.999 --max-extensions 2 --out "$tmp/sweep" "${prog[@]}" > "$tmp/sweep.log" 2>&1 ||
  { cat "$tmp/sweep.log"; fail "the sweep"; }
for f in tune.md tune.json sweep.json; do [ -s "$tmp/sweep/$f" ] || fail "no $f"; done
grep -q "^## Chosen" "$tmp/sweep/tune.md" || fail "tune.md has no Chosen section"
python3 - "$tmp/sweep" <<'PY' > "$tmp/chosen" || exit 1
import json, os, sys
d = sys.argv[1]
t = json.load(open(os.path.join(d, "tune.json")))
assert t["metric"] == "val_acc" and t["val_fraction"] == 0.1, (t["metric"], t["val_fraction"])
o = {x["label"]: x for x in t["optimizers"]}
assert set(t["chosen"]) == {"SGDM", "Adam"}, t["chosen"]
sgdm, adam = o["SGDM"], o["Adam"]
# SGDM: 1e-2 (the largest) beat 1e-4 and 1e-3, so 0.1 was added, and so on up to two extensions
assert [a["value"] for a in sgdm["added"]][:1] == ["0.1"], sgdm["added"]
assert 1 <= len(sgdm["added"]) <= 2 and len(sgdm["points"]) == 3 + len(sgdm["added"]), sgdm["added"]
assert all("largest" in a["reason"] for a in sgdm["added"]), sgdm["added"]
added = [p for p in sgdm["points"] if p["added"]]
assert len(added) == len(sgdm["added"]) and all(p["mean"] is not None or p["diverged"] for p in added), added
for p in sgdm["points"] + adam["points"]:
    for r in p["runs"]:
        assert os.path.exists(os.path.join(d, r["dir"], "done.json")), r["dir"]
        assert os.path.exists(os.path.join(d, r["dir"], "command.txt")), r["dir"]
# Adam: the best of 1e-3, 1e-2, 0.1 is interior: nothing added
assert adam["added"] == [] and len(adam["points"]) == 3, adam["added"]
assert adam["chosen"]["params"]["lr"] == "1e-2", adam["chosen"]
best = max(p["mean"] for p in sgdm["points"] if not p["diverged"])
assert sgdm["chosen"]["mean"] == best, (sgdm["chosen"], best)
for label, spec in t["chosen"].items():
    print(f"{label}={spec}")
PY
args=(); while read -r s; do args+=(--optim "$s"); done < "$tmp/chosen"
"$bin/mnist" --check-optim --out "$tmp/x" "${args[@]}" > /dev/null || fail "a chosen spec is not accepted by optim::make"
grep -q "| added" "$tmp/sweep/tune.md" && grep -q "^Added lr=0.1: the best lr=1e-2 was the largest" "$tmp/sweep/tune.md" ||
  fail "tune.md does not say which points were added and why"
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  [ "$(head -c 8 "$tmp/sweep/tune.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "tune.png is not a PNG"
else
  echo "note: /usr/bin/python3 has no matplotlib: tune.png not checked"
fi

# --- divergence: lr 1e12 stops with NaN/Inf (the program's exit code 3); recorded, the sweep goes on
tune --optim sgdm --grid sgdm.lr=0.01,0.1,1e12 --out "$tmp/div" "${prog[@]}" > "$tmp/div.log" 2>&1 ||
  { cat "$tmp/div.log"; fail "the sweep with a diverging point"; }
python3 - "$tmp/div/tune.json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))["optimizers"][0]
div = {p["params"]["lr"]: p["diverged"] for p in o["points"]}
assert div == {"0.01": False, "0.1": False, "1e12": True}, div
assert "NaN or Inf" in o["points"][2]["runs"][0]["stopped"], o["points"][2]
PY
grep -q "^| 1e12 | diverged |" "$tmp/div/tune.md" || fail "the table does not show the diverged point"

# --- repeats over seeds, selection on the final training loss: mean and spread per point, the lowest mean chosen
tune --optim adagrad --grid adagrad.lr=1e-2,5e-2 --seeds 1,2 --select train_loss --max-extensions 0 --out "$tmp/seeds" \
  "${prog[@]}" > "$tmp/seeds.log" 2>&1 || { cat "$tmp/seeds.log"; fail "the sweep over two seeds"; }
python3 - "$tmp/seeds" <<'PY'
import json, os, statistics, sys
d = sys.argv[1]
t = json.load(open(os.path.join(d, "tune.json")))
assert t["metric"] == "train_loss" and t["higher_is_better"] is False, t["metric"]
o = t["optimizers"][0]
for p in o["points"]:
    v = [json.load(open(os.path.join(d, r["dir"], "done.json")))["final"]["train_loss"] for r in p["runs"]]
    assert len(v) == 2 and v[0] != v[1], v  # two seeds: two initialisations, two splits
    assert abs(p["mean"] - statistics.fmean(v)) < 1e-12 and abs(p["std"] - statistics.stdev(v)) < 1e-12, (p, v)
assert o["chosen"]["mean"] == min(p["mean"] for p in o["points"]), o["chosen"]
PY
grep -q "train_loss (mean ± std)" "$tmp/seeds/tune.md" || fail "tune.md does not show mean and spread"

# --- resume: killed after its second run, the same command runs only the missing ones
grid=(--optim sgdm --grid sgdm.lr=1e-3,3e-3,1e-2,3e-2 --max-extensions 0)
tune "${grid[@]}" --out "$tmp/straight" "${prog[@]}" > "$tmp/straight.log" 2>&1 || fail "the straight sweep"
# The kill comes while the third run is under way: a stand-in program runs the real one, except for the third
# point, where it says so and waits to be killed: the kill does not race the clock.
mkdir "$tmp/hold"
cat > "$tmp/hold/mnist" <<EOF
#!/usr/bin/env bash
case " \$* " in *"lr=1e-2"*" --resume "*) touch "$tmp/held"; exec sleep 600 ;; esac
exec "$bin/mnist" "\$@"
EOF
chmod +x "$tmp/hold/mnist"
setsid /usr/bin/python3 "$root/tools/tune" mnist --bin "$tmp/hold" --epochs 1 --threads 1 "${grid[@]}" \
  --out "$tmp/killed" "${prog[@]}" > "$tmp/killed.log" 2>&1 &
pid=$!
for _ in $(seq 1200); do [ -e "$tmp/held" ] && break; sleep 0.1; done
[ -e "$tmp/held" ] || { cat "$tmp/killed.log"; fail "the third run of the sweep to be killed never started"; }
kill -9 -- "-$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=""
done_before=$(find "$tmp/killed" -name done.json | wc -l)
[ "$done_before" -eq 2 ] || fail "expected the kill during run 3, with 2 runs done; $done_before done"
echo "killed with $done_before of 4 runs done"
tune "${grid[@]}" --out "$tmp/killed" "${prog[@]}" > "$tmp/resumed.log" 2>&1 || { cat "$tmp/resumed.log"; fail "resuming"; }
grep -q "tune: $((4 - done_before)) run(s) to go" "$tmp/resumed.log" ||
  { cat "$tmp/resumed.log"; fail "the resumed sweep did not run exactly the $((4 - done_before)) missing runs"; }
diff "$tmp/straight/tune.md" "$tmp/killed/tune.md" || fail "the resumed sweep's table differs from the straight one"
tune "${grid[@]}" --out "$tmp/killed" "${prog[@]}" > "$tmp/again.log" 2>&1 || fail "the finished sweep again"
grep -q "run(s) to go" "$tmp/again.log" && fail "a finished sweep ran something again"
grep -q "^## SGDM" "$tmp/again.log" || fail "a finished sweep does not print the table"

# --- as two ranks (Open MPI's environment, as under mpirun -n 2): each takes every other run, both wait for the
# other's before growing a grid, rank 0 writes the same table as the first sweep's
sweep_args=(--optim sgdm,adam --grid sgdm.lr=1e-4,1e-3,1e-2 --grid adam.lr=1e-3,1e-2,0.1 --grid adam.beta1=0.9
            --grid adam.beta2=0.999 --max-extensions 2 --out "$tmp/ranks")
OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2 tune "${sweep_args[@]}" "${prog[@]}" > "$tmp/rank1.log" 2>&1 &
rank1=$!
OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 tune "${sweep_args[@]}" "${prog[@]}" > "$tmp/rank0.log" 2>&1 ||
  { cat "$tmp/rank0.log"; fail "rank 0"; }
wait "$rank1" || { cat "$tmp/rank1.log"; fail "rank 1"; }
grep -q "rank 1 of 2 takes runs 1, 3, 5" "$tmp/rank1.log" || fail "rank 1 did not take the odd runs"
diff "$tmp/sweep/tune.md" "$tmp/ranks/tune.md" || fail "two ranks give another table than one process"

# --- --jobs 2: the same table
if [ "$(nproc)" -ge 2 ]; then
  tune "${grid[@]}" --jobs 2 --out "$tmp/jobs2" "${prog[@]}" > "$tmp/jobs2.log" 2>&1 || fail "--jobs 2"
  diff "$tmp/straight/tune.md" "$tmp/jobs2/tune.md" || fail "--jobs 2 gives another table than --jobs 1"
else
  echo "note: one core: --jobs 2 not checked"
fi
echo "tune: sweep, edge extension, divergence, seeds, resume, ranks and --jobs behave"
