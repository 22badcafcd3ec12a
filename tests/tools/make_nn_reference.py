#!/usr/bin/python3
"""Writes tests/data/nn_reference.json: values and gradients of the layers and losses from PyTorch 1.13, for
tests/test_nn_reference.cpp. Run with Debian's python3-torch: /usr/bin/python3 tests/tools/make_nn_reference.py.
Each case: f64 inputs, the output, and the gradients of sum(output * r) for a fixed random r."""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(1)
torch.set_default_dtype(torch.float64)


def gru(x, h0, w_ih, w_hh, b_ih, b_hh):
    # what torch.nn.GRU calls, with the weights as inputs: (input, hx, params, has_biases, num_layers, dropout,
    # train, bidirectional, batch_first)
    y, h = torch._VF.gru(x, h0.unsqueeze(0), [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0, False, False, False)
    return torch.cat([y.flatten(), h.flatten()])


labels = torch.tensor([0, 4, 2, 2])
cases = {
    "layer_norm": ([[3, 5], [5], [5]], lambda x, w, b: F.layer_norm(x, [5], w, b)),
    "layer_norm two dims, no affine": ([[2, 3, 4]], lambda x: F.layer_norm(x, [3, 4])),
    "gelu": ([[9]], lambda x: F.gelu(x)),
    "gelu tanh": ([[9]], lambda x: F.gelu(x, approximate="tanh")),
    "silu": ([[9]], lambda x: F.silu(x)),
    "leaky_relu 0.2": ([[9]], lambda x: F.leaky_relu(x, 0.2)),
    "gru": ([[3, 2, 3], [2, 4], [12, 3], [12, 4], [12], [12]], gru),
    "nll_loss of log_softmax": ([[4, 5]], lambda x: F.nll_loss(F.log_softmax(x, 1), labels)),
    "bce with logits": ([[3, 4], [3, 4]], lambda x, y: F.binary_cross_entropy_with_logits(x * 3, torch.sigmoid(y))),
    "l1_loss": ([[3, 4], [3, 4]], lambda x, y: F.l1_loss(x, y)),
    "smooth_l1_loss sum beta 0.5": ([[4, 5], [4, 5]], lambda x, y: F.smooth_l1_loss(x, y, reduction="sum", beta=0.5)),
    "huber_loss delta 0.7": ([[4, 5], [4, 5]], lambda x, y: F.huber_loss(x, y, delta=0.7)),
}
out = []
for name, (shapes, f) in cases.items():
    xs = [torch.randn(s).requires_grad_() for s in shapes]
    y = f(*xs)
    r = torch.randn(y.shape)
    (y * r).sum().backward()
    flat = lambda t: t.detach().reshape(-1).tolist()
    out.append({
        "name": name,
        "inputs": [{"shape": list(x.shape), "values": flat(x)} for x in xs],
        "r": flat(r),
        "output": {"shape": list(y.shape), "values": flat(y)},
        "grads": [flat(x.grad) for x in xs],
    })
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "nn_reference.json")
with open(path, "w") as f:
    json.dump({"generator": "tests/tools/make_nn_reference.py", "torch": torch.__version__, "cases": out}, f)
    f.write("\n")
