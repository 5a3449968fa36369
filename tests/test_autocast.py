"""torch.autocast on the CPU: fastrnn's modules run in the autocast dtype (their forward ops
cast input, states and weights with torch's cached casts), gradients reach the float32
parameters, and the results stay within the half-precision rule of DESIGN.md."""

from __future__ import annotations

import copy

import pytest
import torch

from utils import MODES, assert_within_half_precision_rule, make_pair, randn, run_with_grads


@pytest.mark.parametrize("mode", MODES)
def test_cpu_autocast_runs_in_bfloat16(mode, generator):
    reference, fast = make_pair(mode, 5, 19, 2, bidirectional=True)
    x = randn(generator, 6, 3, 5)
    grad_output = randn(generator, 6, 3, 38)
    grad_state = [randn(generator, 4, 3, 19) for _ in range(2 if mode == "LSTM" else 1)]
    exact = run_with_grads(copy.deepcopy(reference).double(), x.double(), None,
                           grad_output.double(), [g.double() for g in grad_state])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, state = fast(x)
        theirs = run_with_grads(reference, x, None, grad_output, grad_state)
        ours = run_with_grads(fast, x, None, grad_output, grad_state)
    assert output.dtype == torch.bfloat16
    assert all(s.dtype == torch.bfloat16 for s in (state if isinstance(state, tuple) else [state]))
    # Gradients reach the float32 parameters and input in float32.
    assert all(v.dtype == torch.float32 for k, v in ours.items() if k.startswith("grad"))
    assert_within_half_precision_rule(ours, theirs, exact)


def test_autocast_off_inside_leaves_float32(generator):
    _, fast = make_pair("LSTM", 5, 7)
    x = randn(generator, 4, 2, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.autocast("cpu", enabled=False):
            output, _ = fast(x)
    assert output.dtype == torch.float32
