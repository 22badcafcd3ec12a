# Writes the seed corpora of tests/fuzz/ (small valid and nearly valid inputs for each target).
# Usage: python3 tests/fuzz/make_seeds.py   (rewrites the seed-* files; found inputs are kept)
import gzip, json, os, struct, zlib

here = os.path.dirname(os.path.abspath(__file__))

def put(target, name, data):
    with open(os.path.join(here, target, "seed-" + name), "wb") as f:
        f.write(data)

# IDX: images [3, 2, 2] and labels [3], raw and gzip, and the classic faults.
images = struct.pack(">IIII", 0x803, 3, 2, 2) + bytes(range(12))
labels = struct.pack(">II", 0x801, 3) + bytes([0, 9, 4])
put("idx", "images", images)
put("idx", "labels", labels)
put("idx", "images.gz", gzip.compress(images, mtime=0))
put("idx", "labels.gz", gzip.compress(labels, mtime=0))
put("idx", "truncated", images[:-3])
put("idx", "trailing", labels + b"\0")
put("idx", "lying-header", struct.pack(">IIII", 0x803, 60000, 28, 28) + bytes(16))
put("idx", "truncated.gz", gzip.compress(images, mtime=0)[:-6])

# CIFAR-10 binary: two records (label byte + 3072 pixel bytes), one record, and the classic faults.
def cifar_record(label, k):
    return bytes([label]) + bytes((7 * k + p) % 256 for p in range(3072))
two = cifar_record(3, 0) + cifar_record(9, 1)
os.makedirs(os.path.join(here, "cifar"), exist_ok=True)
put("cifar", "two", two)
put("cifar", "one", cifar_record(0, 2))
put("cifar", "truncated", two[:-1])
put("cifar", "label-10", cifar_record(1, 0) + cifar_record(10, 1))
put("cifar", "empty", b"")
put("cifar", "trailing", two + b"\0")

# safetensors: tapegrad checkpoints of nn::Linear(2, 2) with Adam after one step (the fuzz target's model),
# with the checksum tapegrad writes, and one without (as other frameworks write them).
def safetensors(tensors, meta, checksum=True):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"data_offsets": [len(data), len(data) + len(raw)], "dtype": dtype, "shape": shape}
        data += raw
    if meta:
        header["__metadata__"] = dict(meta)
    if checksum:  # CRC-32 of the header without the key (sorted, compact: nlohmann's dump), then the data
        crc = zlib.crc32(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
        crc = zlib.crc32(data, crc)
        header.setdefault("__metadata__", {})["tapegrad.checksum"] = "crc32:%08x" % crc
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data

f32 = lambda *v: struct.pack("<%df" % len(v), *v)
f64 = lambda *v: struct.pack("<%dd" % len(v), *v)
ckpt = {
    "model.weight": ("F32", [2, 2], f32(0.1, -0.2, 0.3, -0.4)),
    "model.bias": ("F32", [2], f32(0.5, -0.5)),
    "optim.lr": ("F64", [], f64(1e-3)),
    "optim.initial_lr": ("F64", [], f64(1e-3)),
    "optim.0.step": ("F64", [], f64(1)),
    "optim.0.exp_avg": ("F32", [2, 2], f32(0.01, 0.02, 0.03, 0.04)),
    "optim.0.exp_avg_sq": ("F32", [2, 2], f32(1e-4, 4e-4, 9e-4, 16e-4)),
    "optim.1.step": ("F64", [], f64(1)),
    "optim.1.exp_avg": ("F32", [2], f32(0.1, 0.2)),
    "optim.1.exp_avg_sq": ("F32", [2], f32(0.01, 0.04)),
}
put("safetensors", "checkpoint", safetensors(ckpt, {"epoch": "1"}))
put("safetensors", "no-checksum", safetensors(ckpt, {"epoch": "1"}, checksum=False))
put("safetensors", "model-only", safetensors({k: v for k, v in ckpt.items() if k.startswith("model.")}, {}))
put("safetensors", "i64", safetensors({"y": ("I64", [3], struct.pack("<3q", 1, 2, 3))}, {}))
good = safetensors(ckpt, {"epoch": "1"})
put("safetensors", "truncated", good[:-5])
put("safetensors", "flipped", good[:-1] + bytes([good[-1] ^ 1]))

# Optimizer spec strings: every optimizer, every option, and some near misses.
for i, s in enumerate([
    "sgd:lr=0.1,momentum=0.9,nesterov=true,dampening=0,weight_decay=1e-4",
    "sgdm", "adagrad:lr=0.01,lr_decay=0,initial_accumulator_value=0.1,eps=1e-10",
    "adam:lr=1e-3,betas=0.9/0.999,eps=1e-8,weight_decay=0,amsgrad=false", "amsgrad:lr=1e-3",
    "adamw:lr=1e-3,weight_decay=1e-2", "adabound:lr=1e-3,final_lr=0.1,gamma=1e-3",
    "amsbound:lr=1e-3,final_lr=0.1,gamma=1e-3", "adaboundw:lr=1e-3,final_lr=0.1,weight_decay=5e-4",
    "adam:lr=-1", "adam:lr=nan", "adam:betas=0.9", "adam:lr=1e-3,lr=2e-3", "nosuch:lr=1", "adam:", ":",
]):
    put("optim_spec", "%02d" % i, s.encode())

# Text corpora: 3 header bytes (where train ends and valid ends, as fractions of 255 of the rest; batch and
# bptt), then the three texts back to back.
def corpus(train, valid, test, batch=2, bptt=3):
    body = train + valid + test
    n = len(body)
    a = (len(train) * 255 + n - 1) // n if n else 0
    rest = n - len(train)
    b = (len(valid) * 255 + rest - 1) // rest if rest else 0
    hdr = bytes([a, b, (batch - 1) + 4 * (bptt - 1)])
    return hdr + body

ptb_train = b" the cat sat on the mat \n a dog <unk> the cat \n the N cats sat \n"
for name, data in {
    "ptb": corpus(ptb_train, b" the dog sat \n", b" a cat <unk> \n"),
    "unknown-words": corpus(ptb_train, b" the zebra sat \n", b" a unicorn \n"),
    "no-unk": corpus(b" a b c \n b c a \n", b" a d \n", b" c \n"),
    "crlf-no-final-newline": corpus(b"a b\r\nc a\r\nb", b"a\r\n", b"c"),
    "control-byte": corpus(b" a b \n c \x00 d \n", b" a \n", b" b \n"),
    "empty-valid": corpus(b" a b \n", b"", b" a \n"),
    "blank-lines": corpus(b"\n\n\n\n\n\n", b"\n", b"\n", batch=3, bptt=1),
    "long-line": corpus(b" ".join(b"w%d" % (i % 37) for i in range(400)) + b"\n", b"w1 w2\n", b"w3\n", 4, 8),
}.items():
    put("text_corpus", name, data)
