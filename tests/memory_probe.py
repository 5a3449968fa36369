"""Memory measurements for test_memory.py, each in a fresh process (Linux /proc). Prints one JSON
line with the numbers.

    python tests/memory_probe.py train STEPS   RSS after warm-up and after STEPS Adam steps
    python tests/memory_probe.py infer CALLS   the same for no-grad calls (the C++ fast path)
    python tests/memory_probe.py long MODE     peak RSS of a T=100000 forward and forward+backward
"""

from __future__ import annotations

import gc
import json
import sys

import torch
from torch import nn

import fastrnn


def _status(key: str) -> int:
    """A byte count from /proc/self/status (VmRSS, VmHWM, VmStk)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = fastrnn.LSTM(16, 64, num_layers=2)
        self.head = nn.Linear(64, 4)

    def forward(self, x):
        output, _ = self.lstm(x)
        return self.head(output[-1])


def train(steps: int) -> dict:
    torch.manual_seed(0)
    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, target = torch.randn(20, 8, 16), torch.randn(8, 4)

    def step():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
        return loss.item()

    for _ in range(100):
        step()
    gc.collect()
    start = _status("VmRSS")
    for _ in range(steps):
        loss = step()
    gc.collect()
    end = _status("VmRSS")
    return {"steps": steps, "rss_start": start, "rss_end": end, "growth_bytes": end - start,
            "final_loss": loss}


def infer(calls: int) -> dict:
    torch.manual_seed(0)
    model = fastrnn.LSTM(16, 64, num_layers=2).eval()
    x = torch.randn(20, 8, 16)
    state = (torch.randn(2, 8, 64), torch.randn(2, 8, 64))
    with torch.no_grad():
        for _ in range(100):
            model(x, state)
        gc.collect()
        refs = (sys.getrefcount(x), sys.getrefcount(state[0]), sys.getrefcount(model.weight_ih_l0))
        start = _status("VmRSS")
        for _ in range(calls):
            output, (h, c) = model(x, state)
        del output, h, c
        gc.collect()
        end = _status("VmRSS")
        after = (sys.getrefcount(x), sys.getrefcount(state[0]), sys.getrefcount(model.weight_ih_l0))
    return {"calls": calls, "rss_start": start, "rss_end": end, "growth_bytes": end - start,
            "refcount_growth": sum(after) - sum(refs)}


def long(mode: str) -> dict:
    torch.manual_seed(0)
    steps, batch, input_size, hidden = 100_000, 1, 4, 8
    module = getattr(fastrnn, mode)(input_size, hidden)
    x = torch.randn(steps, batch, input_size)
    blocks = {"LSTM": 5, "GRU": 4, "RNN": 0}[mode]  # workspace width in units of H
    element = x.element_size()
    output_bytes = steps * batch * hidden * element
    # Warm-up on a short sequence: libraries load code and set up buffers on first use (tens of
    # MiB of RSS, the same for any T), which is not what this measures.
    module(x[:100].clone().requires_grad_())[0].backward(torch.ones(100, batch, hidden))
    cases = []
    for grad in (False, True):
        input = x.clone().requires_grad_(grad)
        gc.collect()
        base, stack = _status("VmRSS"), _status("VmStk")
        _reset_peak()
        with torch.set_grad_enabled(grad):
            output, _ = module(input)
            if grad:
                output.backward(torch.ones_like(output))
        peak = _status("VmHWM") - base
        must_exist = output_bytes
        if grad:  # saved workspace (float32), output gradient, input gradient
            must_exist += steps * batch * blocks * hidden * 4 + output_bytes + input.numel() * element
        cases.append({"mode": mode, "grad": grad, "peak_bytes": peak,
                      "must_exist_bytes": must_exist,
                      "stack_growth_bytes": _status("VmStk") - stack})
        del output, input
    return {"cases": cases}


if __name__ == "__main__":
    kind, argument = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    if kind == "train":
        result = train(int(argument))
    elif kind == "infer":
        result = infer(int(argument))
    else:
        result = long(argument)
    print(json.dumps(result))
