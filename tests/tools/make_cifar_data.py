# A small generated CIFAR-10-format data set (binary version) for the tool tests: data_batch_1..5.bin with
# N records each (default 64) and test_batch.bin with 100. Each class tints its own band of rows in one
# colour plane, over noise: learnable, not trivial.
# Usage: python3 make_cifar_data.py DIR [N]
import os, random, sys
d = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 64
os.makedirs(d, exist_ok=True)
rng = random.Random(0)
def write(name, count):
    out = bytearray()
    for _ in range(count):
        y = rng.randrange(10)
        out.append(y)
        for c in range(3):
            for r in range(32):
                lit = c == y % 3 and r // 3 == y
                out += bytes(min(255, rng.randrange(160) + (90 if lit else 0)) for _ in range(32))
    with open(os.path.join(d, name), "wb") as f:
        f.write(out)
for i in range(1, 6):
    write("data_batch_%d.bin" % i, n)
write("test_batch.bin", 100)
