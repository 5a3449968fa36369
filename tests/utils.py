"""Helpers shared by the tests: random data, tolerances, running a module with every gradient."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import fastrnn

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]

# The directory that holds the fastrnn package this process imported (the checkout, or
# site-packages for an installed wheel): what a test's subprocess puts on its PYTHONPATH to
# import the same one.
FASTRNN_PARENT = str(Path(fastrnn.__file__).resolve().parents[1])

# DESIGN.md: fp64 ~1e-10 relative, fp32 ~1e-5 relative (atol covers values near zero).
TOLERANCES = {torch.float64: dict(rtol=1e-10, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-5)}


def tolerances(dtype, expected: Tensor) -> dict[str, float]:
    """TOLERANCES[dtype] with atol scaled by the expected tensor's magnitude (at least 1), as the
    half-precision rule scales its 1e-3: "relative" is relative to the tensor, not to each
    element. A weight gradient's element is a sum over every row of the sequence, and near-zero
    elements of a large sum carry the rounding of its large terms: any summation order other than
    torch's own (fastrnn's per-chunk sums, its micro-kernel's GEMMs) leaves such an element up to
    a few 1e-5 from torch.nn's at T*B of a few thousand rows, while the tensor-relative error
    stays below 1e-6 (git show 74b4e99:docs/benchmarks.md, "Tried and reverted: backward's GEMMs
    on fastrnn's micro-kernel", and the commit that brought this rule)."""
    base = TOLERANCES[dtype]
    finite = expected.detach().abs().nan_to_num(0.0, 0.0, 0.0)
    scale = max(1.0, finite.max().item()) if finite.numel() else 1.0
    return dict(rtol=base["rtol"], atol=base["atol"] * scale)


def make_pair(mode: str, *args, **kwargs) -> tuple[nn.Module, nn.Module]:
    """A torch.nn module and its fastrnn twin holding the same weights."""
    if mode.startswith("RNN"):
        kwargs["nonlinearity"] = "tanh" if mode == "RNN_TANH" else "relu"
        torch_cls, fast_cls = nn.RNN, fastrnn.RNN
    else:
        torch_cls, fast_cls = getattr(nn, mode), getattr(fastrnn, mode)
    reference = torch_cls(*args, **kwargs)
    fast = fast_cls(*args, **kwargs)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def randn(generator: torch.Generator, *shape: int, dtype=torch.float32) -> Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)


def flatten_state(state) -> list[Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def run_with_grads(module: nn.Module, input: Tensor, hx, grad_output: Tensor,
                   grad_state: Sequence[Tensor]) -> dict[str, Tensor]:
    """Runs module(input, hx) and backpropagates the given output and final-state gradients.
    Returns the outputs, final states and the gradients of input, initial states and every
    parameter, keyed by name."""
    input = input.detach().clone().requires_grad_()
    states = None
    if hx is not None:
        states = tuple(h.detach().clone().requires_grad_() for h in flatten_state(hx))
        hx = states if isinstance(hx, tuple) else states[0]
    output, final = module(input, hx)
    finals = flatten_state(final)
    loss = (output * grad_output).sum() + sum((f * g).sum() for f, g in zip(finals, grad_state))
    names = [name for name, _ in module.named_parameters()]
    wrt = [input, *(states or ()), *module.parameters()]
    grads = torch.autograd.grad(loss, wrt)
    result = {"output": output.detach()}
    result.update({f"final_{i}": f.detach() for i, f in enumerate(finals)})
    result["grad_input"] = grads[0]
    for i in range(len(states or ())):
        result[f"grad_state_{i}"] = grads[1 + i]
    for name, grad in zip(names, grads[1 + len(states or ()):]):
        result[f"grad_{name}"] = grad
    return result


def assert_results_close(actual: dict[str, Tensor], expected: dict[str, Tensor], dtype) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], **tolerances(dtype, expected[key]),
                                   msg=lambda m, key=key: f"{key}: {m}")


def assert_within_half_precision_rule(actual: dict[str, Tensor], torch_same_dtype: dict[str, Tensor],
                                      reference64: dict[str, Tensor]) -> None:
    """DESIGN.md's rule for float16/bfloat16: fastrnn's error against a float64 reference is at
    most twice torch.nn's own error in that dtype, plus 1e-3 (scaled by the tensor's magnitude)."""
    for key, exact in reference64.items():
        scale = max(1.0, exact.abs().max().item())
        ours = (actual[key].double() - exact).abs().max().item()
        theirs = (torch_same_dtype[key].double() - exact).abs().max().item()
        assert ours <= 2 * theirs + 1e-3 * scale, f"{key}: fastrnn {ours:.3g} vs torch {theirs:.3g}"


def assert_same_error(torch_call: Callable[[], object], fast_call: Callable[[], object],
                      description: str = "") -> None:
    """torch_call raises; fast_call must raise the same exception type with the same message."""
    with pytest.raises(Exception) as expected:
        torch_call()
    with pytest.raises(type(expected.value)) as actual:
        fast_call()
    assert str(actual.value) == str(expected.value), description
