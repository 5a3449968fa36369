"""fastrnn's cells against torch.nn's: parameters, initialisation and repr, outputs and every
gradient (batched and unbatched, with and without a state), and torch's errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fastrnn

from utils import assert_same_error, randn, tolerances

# CI reruns these under each lower FASTRNN_CPU_ISA (.ci/run).
pytestmark = pytest.mark.kernels

CELLS = {
    "RNNCell-tanh": (nn.RNNCell, fastrnn.RNNCell, {"nonlinearity": "tanh"}),
    "RNNCell-relu": (nn.RNNCell, fastrnn.RNNCell, {"nonlinearity": "relu"}),
    "LSTMCell": (nn.LSTMCell, fastrnn.LSTMCell, {}),
    "GRUCell": (nn.GRUCell, fastrnn.GRUCell, {}),
}
INPUT, HIDDEN, BATCH = 5, 19, 3


def make_cell_pair(name, bias=True, dtype=torch.float32):
    torch_cls, fast_cls, kwargs = CELLS[name]
    reference = torch_cls(INPUT, HIDDEN, bias=bias, dtype=dtype, **kwargs)
    fast = fast_cls(INPUT, HIDDEN, bias=bias, dtype=dtype, **kwargs)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def run_cell(cell, x, hx, grads_out):
    x = x.detach().clone().requires_grad_()
    states = None if hx is None else [h.detach().clone().requires_grad_() for h in hx]
    out = cell(x, None if states is None else (tuple(states) if len(states) == 2 else states[0]))
    outs = list(out) if isinstance(out, tuple) else [out]
    wrt = [x, *(states or []), *[p for p in cell.parameters()]]
    grads = torch.autograd.grad(outs, wrt, grads_out)
    return [o.detach() for o in outs] + list(grads)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("with_state", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("name", list(CELLS))
def test_cell_matches_torch(name, bias, with_state, batched, dtype, generator):
    reference, fast = make_cell_pair(name, bias, dtype)
    lead = (BATCH,) if batched else ()
    x = randn(generator, *lead, INPUT, dtype=dtype)
    n_states = 2 if name == "LSTMCell" else 1
    hx = [randn(generator, *lead, HIDDEN, dtype=dtype) for _ in range(n_states)] if with_state else None
    grads_out = [randn(generator, *lead, HIDDEN, dtype=dtype) for _ in range(n_states)]
    for actual, expected in zip(run_cell(fast, x, hx, grads_out), run_cell(reference, x, hx, grads_out)):
        torch.testing.assert_close(actual, expected, **tolerances(dtype, expected))


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("with_state", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("sizes", [(5, 0), (0, 4), (0, 0), "batch0"],
                         ids=["hidden0", "input0", "both0", "batch0"])
@pytest.mark.parametrize("name", list(CELLS))
def test_zero_width_cells_match_torch(name, sizes, bias, with_state, batched, generator):
    """torch.nn's cells take hidden_size 0 and input_size 0, and an empty batch: fastrnn's give
    the same results and every gradient (shapes and values: zeros and empty tensors)."""
    if sizes == "batch0" and not batched:
        pytest.skip("an unbatched input has no batch to empty")
    input_size, hidden = (5, 4) if sizes == "batch0" else sizes
    batch = 0 if sizes == "batch0" else BATCH
    torch_cls, fast_cls, kwargs = CELLS[name]
    reference = torch_cls(input_size, hidden, bias=bias, dtype=torch.float64, **kwargs)
    fast = fast_cls(input_size, hidden, bias=bias, dtype=torch.float64, **kwargs)
    fast.load_state_dict(reference.state_dict())
    lead = (batch,) if batched else ()
    x = randn(generator, *lead, input_size, dtype=torch.float64)
    n_states = 2 if name == "LSTMCell" else 1
    hx = ([randn(generator, *lead, hidden, dtype=torch.float64) for _ in range(n_states)]
          if with_state else None)
    grads_out = [randn(generator, *lead, hidden, dtype=torch.float64) for _ in range(n_states)]
    actual, expected = run_cell(fast, x, hx, grads_out), run_cell(reference, x, hx, grads_out)
    assert [t.shape for t in actual] == [t.shape for t in expected]
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, **tolerances(torch.float64, e))


@pytest.mark.parametrize("with_state", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("name", list(CELLS))
def test_cell_double_backward_matches_torch(name, with_state, generator):
    """Gradients of a function of the gradients (create_graph=True) equal torch.nn's."""
    reference, fast = make_cell_pair(name, dtype=torch.float64)
    x = randn(generator, BATCH, INPUT, dtype=torch.float64)
    n_states = 2 if name == "LSTMCell" else 1
    states = [randn(generator, BATCH, HIDDEN, dtype=torch.float64) for _ in range(n_states)]

    def run(cell):
        input = x.clone().requires_grad_()
        hx = [s.clone().requires_grad_() for s in states] if with_state else []
        out = cell(input, (tuple(hx) if n_states == 2 else hx[0]) if hx else None)
        outs = list(out) if isinstance(out, tuple) else [out]
        wrt = [input, *hx, *cell.parameters()]
        first = torch.autograd.grad(sum(o.tanh().sum() for o in outs), wrt, create_graph=True)
        return [*first, *torch.autograd.grad(sum((g * g).sum() for g in first), wrt)]

    for actual, expected in zip(run(fast), run(reference)):
        torch.testing.assert_close(actual, expected, **tolerances(torch.float64, expected))


@pytest.mark.parametrize("name", list(CELLS))
def test_cell_steps_through_a_sequence(name, generator):
    """A cell driven step by step over a sequence, state fed back, as an online model runs it."""
    reference, fast = make_cell_pair(name, dtype=torch.float64)
    xs = randn(generator, 6, BATCH, INPUT, dtype=torch.float64)
    lstm = name == "LSTMCell"
    state_ref = state_fast = None
    for x in xs:
        state_ref = reference(x, state_ref)
        state_fast = fast(x, state_fast)
    for a, b in zip(state_fast if lstm else [state_fast], state_ref if lstm else [state_ref]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("bias", [True, False])
def test_cell_parameters_initialisation_and_repr(name, bias):
    torch_cls, fast_cls, kwargs = CELLS[name]
    torch.manual_seed(3)
    reference = torch_cls(INPUT, HIDDEN, bias=bias, **kwargs)
    torch.manual_seed(3)
    fast = fast_cls(INPUT, HIDDEN, bias=bias, **kwargs)
    assert repr(fast) == repr(reference)
    assert [n for n, _ in fast.named_parameters()] == [n for n, _ in reference.named_parameters()]
    for a, b in zip(fast.parameters(), reference.parameters()):
        assert torch.equal(a, b)
    if not bias:
        assert fast.bias_ih is None and fast.bias_hh is None


def _bad_cell_calls(name):
    lstm = name == "LSTMCell"

    def state(*shape, dtype=torch.float32):
        return (torch.randn(*shape, dtype=dtype), torch.randn(*shape, dtype=dtype)) if lstm \
            else torch.randn(*shape, dtype=dtype)

    good = torch.randn(BATCH, INPUT)
    cases = [
        ("3-D input", torch.randn(2, BATCH, INPUT), None),
        ("input size", torch.randn(BATCH, INPUT + 1), None),
        ("state batch", good, state(BATCH + 1, HIDDEN)),
        ("state size", good, state(BATCH, HIDDEN + 1)),
        ("3-D state", good, state(1, BATCH, HIDDEN)),
        ("unbatched input, batched state", torch.randn(INPUT), state(BATCH, HIDDEN)),
        ("input dtype", good.double(), None),
        ("state dtype", good, state(BATCH, HIDDEN, dtype=torch.float64)),
    ]
    if lstm:
        cases.append(("cell state size", good, (torch.randn(BATCH, HIDDEN), torch.randn(BATCH, 2))))
    return cases


@pytest.mark.parametrize("name", list(CELLS))
def test_bad_cell_input_raises_like_torch(name):
    reference, fast = make_cell_pair(name)
    for description, x, hx in _bad_cell_calls(name):
        assert_same_error(lambda: reference(x, hx), lambda: fast(x, hx), description)


def test_unknown_nonlinearity_raises_like_torch():
    reference, fast = make_cell_pair("RNNCell-tanh")
    reference.nonlinearity = fast.nonlinearity = "gelu"
    x = torch.randn(BATCH, INPUT)
    assert_same_error(lambda: reference(x), lambda: fast(x))
