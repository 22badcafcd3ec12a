#!/usr/bin/env bash
# tools/docs: Doxygen builds the API reference from the public headers without a single warning, and the
# headers' plain // comments reach it through the filter (a file's comment, a class's, a member's). Skipped
# (exit 77) when doxygen is not installed (tools/docs installs it: apt-get install doxygen).
# Usage: test_docs.sh SOURCE_ROOT
set -euo pipefail
root=$1
command -v doxygen > /dev/null || { echo "SKIP: doxygen is not installed (apt-get install doxygen)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$root/tools/docs" --no-install -o "$tmp/api" > "$tmp/log" 2>&1 || { cat "$tmp/log"; echo "FAIL: tools/docs"; exit 1; }
[ ! -s "$tmp/api/warnings.log" ] || { cat "$tmp/api/warnings.log"; echo "FAIL: Doxygen warnings"; exit 1; }
html=$tmp/api/html
[ -f "$html/index.html" ] || { echo "FAIL: no index.html"; exit 1; }
# One page of each kind, with text that exists only in the headers' // comments.
grep -q "Adam, AMSGrad and AdamW: one update rule, two flags" "$html/adam_8hpp.html" || { echo "FAIL: a file's comment"; exit 1; }
grep -q "One thread uses a loader at a time" "$html/classtapegrad_1_1datasets_1_1DataLoader.html" ||
  { echo "FAIL: a class's comment"; exit 1; }
grep -q "the id of &quot;&lt;unk&gt;&quot;\|the id of \"&lt;unk&gt;\"" "$html/structtapegrad_1_1datasets_1_1Vocabulary.html" ||
  { echo "FAIL: a member's trailing comment, with its <unk> shown as written"; exit 1; }
grep -q "m_t = beta1 \* m_{t-1} + (1 - beta1) \* d_t" "$html/adam_8hpp.html" || { echo "FAIL: equations kept verbatim"; exit 1; }
pages=$(find "$html" -name '*.html' | wc -l)
echo "docs: $pages pages, no warnings: ok"
