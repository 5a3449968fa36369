"""Behaviour PyTorch's own tests of its recurrent layers check through the public API (its test_nn
RNN tests: retained graphs, dropout changed on a built module, zero initial states, weight norm
and spectral norm, reassigned parameters, eval mode, dtype conversion), checked here on
fastrnn's classes side by side with torch.nn's. Written for fastrnn, modelled on what those
tests exercise, not copied from them."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from utils import MODES, flatten_state, make_pair, randn

# CI reruns these under each lower FASTRNN_CPU_ISA (.ci/run).
pytestmark = pytest.mark.kernels


def _outputs_and_grads(module, x, hx=None, retain: int = 1):
    """Output, final states, and the gradients of the input and every parameter after `retain`
    backward passes through one graph (accumulated, as .grad does)."""
    module.zero_grad()
    x = x.detach().clone().requires_grad_()
    output, final = module(x, hx)
    loss = output.sin().sum() + sum((f * f).sum() for f in flatten_state(final))
    for i in range(retain):
        loss.backward(retain_graph=i < retain - 1)
    grads = [x.grad] + [p.grad for p in module.parameters()]
    return [output.detach(), *[f.detach() for f in flatten_state(final)], *grads]


def _assert_same(actual, expected, tolerance=1e-10):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("mode", MODES)
def test_backward_twice_through_a_retained_graph(mode, generator):
    reference, fast = make_pair(mode, 5, 7, 2, bidirectional=True, dtype=torch.float64)
    x = randn(generator, 6, 3, 5, dtype=torch.float64)
    _assert_same(_outputs_and_grads(fast, x, retain=2), _outputs_and_grads(reference, x, retain=2))


@pytest.mark.parametrize("mode", MODES)
def test_zero_initial_state_equals_none(mode, generator):
    _, fast = make_pair(mode, 5, 7, 2, dtype=torch.float64)
    x = randn(generator, 6, 3, 5, dtype=torch.float64)
    zeros = torch.zeros(2, 3, 7, dtype=torch.float64)
    hx = (zeros, zeros) if mode == "LSTM" else zeros
    _assert_same(_outputs_and_grads(fast, x, hx), _outputs_and_grads(fast, x), 0)


@pytest.mark.parametrize("mode", MODES)
def test_dropout_changed_after_construction(mode, generator):
    """torch.nn reads `dropout` at every call: p=1 zeroes what reaches the second layer, p=0
    turns it off again, and eval mode ignores it."""
    reference, fast = make_pair(mode, 5, 7, 2, dtype=torch.float64)
    x = randn(generator, 6, 3, 5, dtype=torch.float64)
    for p, training in ((1.0, True), (0.0, True), (1.0, False)):
        for module in (reference, fast):
            module.dropout = p
            module.train(training)
        _assert_same(_outputs_and_grads(fast, x), _outputs_and_grads(reference, x))
    # p = 1 really zeroed the second layer's input: its output depends on the biases alone
    for module in (reference, fast):
        module.dropout = 1.0
        module.train()
    first = fast(x)[0]
    assert torch.equal(first, fast(randn(generator, 6, 3, 5, dtype=torch.float64))[0])


@pytest.mark.parametrize("norm", ["weight_norm", "spectral_norm"])
@pytest.mark.parametrize("mode", MODES)
def test_weight_and_spectral_norm(mode, norm, generator):
    reference, fast = make_pair(mode, 5, 7, dtype=torch.float64)
    for module in (reference, fast):
        torch.manual_seed(0)  # spectral_norm's power iteration starts from a random vector
        getattr(parametrizations, norm)(module, "weight_hh_l0")
    x = randn(generator, 6, 3, 5, dtype=torch.float64)
    _assert_same(_outputs_and_grads(fast, x), _outputs_and_grads(reference, x))


@pytest.mark.parametrize("mode", MODES)
def test_reassigned_parameter_is_used(mode, generator):
    reference, fast = make_pair(mode, 5, 7, dtype=torch.float64)
    weight = randn(generator, *reference.weight_ih_l0.shape, dtype=torch.float64)
    for module in (reference, fast):
        module.weight_ih_l0 = nn.Parameter(weight.clone())
    x = randn(generator, 6, 3, 5, dtype=torch.float64)
    _assert_same(_outputs_and_grads(fast, x), _outputs_and_grads(reference, x))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", MODES)
def test_dtype_conversion(mode, dtype, generator):
    """.to(dtype) converts every parameter; results come in that dtype, as torch.nn's."""
    reference, fast = make_pair(mode, 5, 7)
    reference.to(dtype)
    fast.to(dtype)
    assert all(p.dtype == dtype for p in fast.parameters())
    x = randn(generator, 6, 3, 5, dtype=dtype)
    with torch.no_grad():
        ours, theirs = fast(x), reference(x)
    assert [t.dtype for t in [ours[0], *flatten_state(ours[1])]] == \
        [t.dtype for t in [theirs[0], *flatten_state(theirs[1])]]


@pytest.mark.parametrize("mode", MODES)
def test_empty_packed_sequence_is_a_clear_error(mode):
    """A PackedSequence of no sequences: torch.nn fails reading batch_sizes[0] (IndexError);
    fastrnn says what is wrong."""
    from torch.nn.utils.rnn import PackedSequence

    _, fast = make_pair(mode, 4, 5)
    empty = PackedSequence(torch.randn(0, 4), torch.tensor([], dtype=torch.long))
    with pytest.raises(RuntimeError, match="batch_sizes must not be empty"):
        fast(empty)
