"""Smoke test of an installed fastrnn (run by scripts/wheel_smoke.sh inside a fresh venv, from a
directory outside the source tree): it is the installed copy, it ships py.typed, and its modules,
cells and convert() match torch.nn, outputs and gradients, in float32 and float64."""

from __future__ import annotations

import pathlib
import sys

import torch
from torch import nn

import fastrnn

installed = pathlib.Path(fastrnn.__file__).resolve().parent
assert pathlib.Path(sys.prefix).resolve() in installed.parents, f"not the installed copy: {installed}"
assert (installed / "py.typed").is_file(), "py.typed missing from the installed package"
assert list(installed.glob("_C*.so")), "the extension is missing"


def check_pair(ref: nn.Module, fast: nn.Module, x: torch.Tensor, tol: float) -> None:
    fast.load_state_dict(ref.state_dict())
    x = x.detach().requires_grad_()
    ref_out, fast_out = ref(x), fast(x)
    flat_ref = [ref_out[0], *(ref_out[1] if isinstance(ref_out[1], tuple) else [ref_out[1]])] \
        if isinstance(ref_out, tuple) else [ref_out]
    flat_fast = [fast_out[0], *(fast_out[1] if isinstance(fast_out[1], tuple) else [fast_out[1]])] \
        if isinstance(fast_out, tuple) else [fast_out]
    for a, b in zip(flat_fast, flat_ref):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    weights = [torch.randn_like(t) for t in flat_ref]
    grads_ref = torch.autograd.grad(sum((t * w).sum() for t, w in zip(flat_ref, weights)),
                                    [x, *ref.parameters()])
    grads_fast = torch.autograd.grad(sum((t * w).sum() for t, w in zip(flat_fast, weights)),
                                     [x, *fast.parameters()])
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


torch.manual_seed(0)
checked = 0
for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
    for name in ("RNN", "LSTM", "GRU"):
        kwargs = {"num_layers": 2, "bidirectional": True, "batch_first": True, "dtype": dtype}
        if name == "LSTM":
            kwargs["proj_size"] = 3
        check_pair(getattr(nn, name)(5, 7, **kwargs), getattr(fastrnn, name)(5, 7, **kwargs),
                   torch.randn(4, 6, 5, dtype=dtype), tol)
        cell = name + "Cell"
        check_pair(getattr(nn, cell)(5, 7, dtype=dtype), getattr(fastrnn, cell)(5, 7, dtype=dtype),
                   torch.randn(4, 5, dtype=dtype), tol)
        checked += 2

model = nn.Sequential(nn.LSTM(5, 7))
fastrnn.convert(model)
assert type(model[0]) is fastrnn.LSTM
print(f"wheel smoke: fastrnn {fastrnn.__version__} from {installed}, torch {torch.__version__}: "
      f"{checked} module/cell parity checks (outputs, states, all gradients) passed")
