#!/usr/bin/python3
"""kjv_to_ptb.py VERSES OUT_DIR [--vocab N] [--any-size]: the King James Bible in the Penn Treebank layout.

VERSES is the output of `bible -f Gen1:1-Rev22:21` (Debian's bible-kjv): one verse a line, "Ref text".
Writes OUT_DIR/ptb.train.txt, ptb.valid.txt, ptb.test.txt and README (how they were made, with counts).

PTB style, as Mikolov's preprocessing of the Penn Treebank:
  - lower case; the possessive 's becomes a token of its own ("king's" -> "king 's", as PTB writes it);
  - punctuation removed (every character other than a-z, 0-9 and the apostrophe of 's), other apostrophes
    dropped; numbers become "N" (the KJV spells its numbers out, so there are hardly any);
  - one verse a line, written " w1 w2 ... wn " (PTB's lines begin and end with a space);
  - the split is fixed, by blocks of 100 consecutive verses: block k goes to valid when k mod 20 = 18, to test
    when k mod 20 = 19, else to train (90 / 5 / 5, every book represented, no verse split);
  - the vocabulary is the 9,998 most frequent training words (ties broken alphabetically) plus "<unk>",
    which replaces every other word in all three files; with the reader's "<eos>" that makes 10,000 types,
    PTB's size.
"""
import collections
import os
import re
import sys

VOCAB_WORDS = 9998
# The first line of the README; datasets/fetch treats a directory holding it as complete.
STAMP = "The King James Bible in the Penn Treebank layout (datasets/kjv_to_ptb.py, version 1)"


def tokens(text):
    t = text.lower()
    t = re.sub(r"'s\b", " 's", t)
    t = re.sub(r"[^a-z0-9' ]+", " ", t)
    out = []
    for w in t.split():
        if w != "'s":
            w = w.replace("'", "")
        if not w:
            continue
        out.append("N" if re.fullmatch(r"[0-9]+", w) else w)
    return out


def main():
    args = sys.argv[1:]
    any_size = "--any-size" in args
    args = [a for a in args if a != "--any-size"]
    vocab_words = VOCAB_WORDS
    if len(args) == 4 and args[2] == "--vocab" and args[3].isdigit() and int(args[3]) > 2:
        vocab_words = int(args[3]) - 2
        args = args[:2]
    if len(args) != 2:
        sys.exit("usage: kjv_to_ptb.py VERSES OUT_DIR [--vocab N] [--any-size]")
    src, out_dir = args
    with open(src, encoding="latin-1") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    if len(lines) < 30000 and not any_size:
        sys.exit(f"kjv_to_ptb.py: {src} holds {len(lines)} verses; expected the whole Bible (31,102)")
    splits = {"train": [], "valid": [], "test": []}
    for k, line in enumerate(lines):
        ref, _, text = line.partition(" ")
        if not re.fullmatch(r"[0-9]?[A-Za-z]+[0-9]+:[0-9]+", ref):
            sys.exit(f"kjv_to_ptb.py: line {k + 1} of {src} does not start with a verse reference: {line[:60]!r}")
        block = (k // 100) % 20
        splits["valid" if block == 18 else "test" if block == 19 else "train"].append(tokens(text))
    counts = collections.Counter(w for verse in splits["train"] for w in verse)
    keep = {w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:vocab_words]}
    os.makedirs(out_dir, exist_ok=True)
    stats = []
    for name, verses in splits.items():
        path = os.path.join(out_dir, f"ptb.{name}.txt")
        n = unk = 0
        with open(path + ".tmp", "w", encoding="ascii") as f:
            for verse in verses:
                words = [w if w in keep else "<unk>" for w in verse]
                n += len(words)
                unk += sum(w == "<unk>" for w in words)
                f.write(" " + " ".join(words) + " \n")
        os.replace(path + ".tmp", path)
        stats.append(f"{name}: {len(verses)} verses, {n} words (+ {len(verses)} <eos>), {unk} <unk>")
    with open(os.path.join(out_dir, "README"), "w") as f:
        f.write(STAMP + "\n\nDebian's bible-kjv-text, decoded by `bible -f Gen1:1-Rev22:21`:\n\n" +
                __doc__.split("\n\n", 1)[1] + "\n" +
                "\n".join(stats) + f"\nvocabulary: {len(keep)} words + <unk> (+ <eos>)\n")
    print("\n".join(stats), file=sys.stderr)


if __name__ == "__main__":
    main()
