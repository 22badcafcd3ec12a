# A small generated MNIST-format data set (gzip IDX files) for the tool tests: 600 training and 200 test
# images in which each class lights up its own band of rows, plus noise: learnable, not trivial.
# Usage: python3 make_mnist_data.py DIR
import gzip, os, random, struct, sys
d = sys.argv[1]; os.makedirs(d)
rng = random.Random(0)
def write(name, n):
    labels = [rng.randrange(10) for _ in range(n)]
    # each class lights up its own band of rows, plus noise: learnable, not trivial
    pix = bytearray()
    for y in labels:
        for r in range(28):
            for c in range(28):
                v = rng.randrange(200) + (60 if r // 3 == y else 0)
                pix.append(min(v, 255))
    with gzip.open(os.path.join(d, name + "-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(pix))
    with gzip.open(os.path.join(d, name + "-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(labels))
write("train", 600)
write("t10k", 200)
