#!/usr/bin/python3
"""make_text_corpus.py DIR [--no-unk]: a small generated corpus in the Penn Treebank layout (ptb.train.txt,
ptb.valid.txt, ptb.test.txt) for the tests: sentences from a tiny grammar over ~60 words, with <unk>, fixed
seed. --no-unk leaves <unk> out of the training text and puts an unknown word into the validation text."""
import os
import random
import sys

out = sys.argv[1]
no_unk = "--no-unk" in sys.argv
rng = random.Random(4)
subjects = ["the king", "a man", "the people", "his son", "the lord", "a woman", "the priest", "they", "he", "she"]
verbs = ["said", "went", "saw", "gave", "took", "made", "heard", "came", "spoke", "built"]
objects = ["the city", "a house", "the land", "his word", "the gold", "an altar", "the gate", "bread", "water", "N sheep"]
tails = ["", "in the morning", "unto them", "and blessed it", "before the people", "with his hand"]

def sentence(unk_ok=True):
    words = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(tails)}".split()
    if unk_ok and rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), "<unk>")
    return " " + " ".join(words) + " \n"

os.makedirs(out, exist_ok=True)
for name, n in (("train", 400), ("valid", 40), ("test", 40)):
    with open(os.path.join(out, f"ptb.{name}.txt"), "w") as f:
        lines = [sentence(unk_ok=not no_unk) for _ in range(n)]
        if no_unk and name == "valid":
            lines[3] = " the zebra went home \n"
        f.writelines(lines)
