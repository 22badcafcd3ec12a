#!/usr/bin/python3
"""Writes tests/data/print_cases.json: tensors and how PyTorch 1.13 prints them (str(t)), for the printing test
of tests/test_tensor.cpp. Run with Debian's python3-torch: /usr/bin/python3 tests/tools/make_print_cases.py.
The body is PyTorch's (_tensor_str); the suffixes are tapegrad's names (dtype=f64 for torch.float64) laid out
by PyTorch's own _add_suffixes, which wraps them by their length."""
import json
import math
import os

import torch

torch.manual_seed(0)
cases = {
    "2-D integral f64": torch.arange(6, dtype=torch.float64).reshape(2, 3),
    "3-D f32, wrapped rows, scientific": torch.randn(4, 5, 6),
    "2-D summarised": torch.randn(50, 50),
    "1-D summarised, scientific": torch.arange(2000, dtype=torch.float32),
    "3-D summarised": torch.randn(12, 10, 10),
    "i64": torch.tensor([1, -20, 3]),
    "i64 summarised": torch.arange(1500),
    "scalar": torch.tensor(2.5),
    "empty 2-D": torch.zeros(0, 3),
    "empty 1-D": torch.zeros(0),
    "nan and inf f64": torch.tensor([1e-5, 1.0, math.nan, math.inf, -math.inf], dtype=torch.float64),
    "integral with large range": torch.tensor([1e9, 2.0, -3.0]),
    "long row f64": torch.randn(30, dtype=torch.float64),
    "small values": torch.tensor([-0.5, 0.25, 0.0]),
    "requires_grad": torch.randn(3).requires_grad_(),
    "requires_grad f64 long": torch.randn(2, 12, dtype=torch.float64).requires_grad_(),
}
def tensor_str(t):
    """str(t) as torch._tensor_str._str_intern writes it for a CPU tensor, with tapegrad's dtype name."""
    suffixes = []
    if t.numel() == 0:
        body = "[]"
        if t.dim() != 1:
            suffixes.append("size=" + str(tuple(t.shape)))
    else:
        body = torch._tensor_str._tensor_str(t.detach(), len("tensor("))
    if t.dtype == torch.float64:
        suffixes.append("dtype=f64")
    if t.requires_grad:
        suffixes.append("requires_grad=True")
    text = torch._tensor_str._add_suffixes("tensor(" + body, suffixes, len("tensor("), False)
    if t.dtype != torch.float64:  # the layout is PyTorch's own: check it against str()
        assert text == str(t), (text, str(t))
    return text


names = {torch.float32: "f32", torch.float64: "f64", torch.int64: "i64"}
out = []
for name, t in cases.items():
    out.append({
        "name": name,
        "shape": list(t.shape),
        "dtype": names[t.dtype],
        "values": [v if math.isfinite(v) else repr(v) for v in t.detach().reshape(-1).double().tolist()],
        "requires_grad": t.requires_grad,
        "expected": tensor_str(t),
    })
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "print_cases.json")
with open(path, "w") as f:
    json.dump({"generator": "tests/tools/make_print_cases.py", "torch": torch.__version__, "cases": out}, f, indent=1)
    f.write("\n")
