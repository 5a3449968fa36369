"""The modules' C++ inference fast path (fastrnn._C.forward_fast, csrc/ops/fast_path.cpp).

It must give exactly the regular path's results, be taken where it is meant to be (CPU calls
that record no gradient), and never be taken where it could change behaviour: autograd,
autocast, torch function and dispatch modes, tensor subclasses, functorch transforms, tracing,
torch.compile and training-mode dropout. Bad input under no_grad still raises torch.nn's errors.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import fastrnn
from fastrnn.modules import RNNBase
from test_modules import _bad_inputs
from utils import MODES, assert_same_error, make_pair, randn

# CI reruns these under each lower FASTRNN_CPU_ISA (.ci/run).
pytestmark = pytest.mark.kernels


@pytest.fixture
def fast_calls(monkeypatch):
    """Records, per module call, whether the fast path produced the result."""
    taken: list[bool] = []
    original = RNNBase._forward_fast

    def spy(self, input, hx):
        result = original(self, input, hx)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(RNNBase, "_forward_fast", spy)
    return taken


def _state(mode, generator, layers, batch, hidden, proj=0, dtype=torch.float32):
    shape = (layers, batch) if batch is not None else (layers,)
    h = randn(generator, *shape, proj or hidden, dtype=dtype)
    return (h, randn(generator, *shape, hidden, dtype=dtype)) if mode == "LSTM" else h


def _regular(module, input, hx):
    """The regular path's result: the input requires grad, so the fast path declines."""
    output, final = module(input.detach().clone().requires_grad_(), hx)
    if isinstance(final, tuple):
        return output.detach(), tuple(f.detach() for f in final)
    return output.detach(), final.detach()


CASES = [
    # (num_layers, bidirectional, batch_first, batch, with hx, extra kwargs)
    (1, False, False, 1, False, {}),
    (1, False, False, 1, True, {}),
    (2, True, False, 3, True, {}),
    (3, False, True, 4, False, {}),
    (2, True, True, 2, True, {}),
    (2, False, False, None, True, {}),  # unbatched
    (1, True, False, None, False, {}),  # unbatched, no state
    (2, False, False, 3, True, {"bias": False}),
]


# float16 takes the op's own path inside the fast path (LayerCall); the others raw storage.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_fast_path_equals_regular_path(mode, case, dtype, generator, fast_calls):
    layers, bidirectional, batch_first, batch, with_hx, kwargs = case
    _, fast = make_pair(mode, 5, 6, layers, bidirectional=bidirectional,
                        batch_first=batch_first, **kwargs)
    fast = fast.to(dtype)
    directions = 2 if bidirectional else 1
    T = 4
    if batch is None:
        input = randn(generator, T, 5, dtype=dtype)
    else:
        input = randn(generator, *((batch, T) if batch_first else (T, batch)), 5, dtype=dtype)
    hx = _state(mode, generator, layers * directions, batch, 6, dtype=dtype) if with_hx else None
    with torch.no_grad():
        output, final = fast(input, hx)
    assert fast_calls == [True]
    expected_output, expected_final = _regular(fast, input, hx)
    assert fast_calls == [True, False]
    # The same kernels in the same order: bitwise equal, not merely close.
    assert torch.equal(output, expected_output)
    for actual, expected in zip(*(f if isinstance(f, tuple) else (f,) for f in (final, expected_final))):
        assert actual.dtype == expected.dtype and torch.equal(actual, expected)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_fast_path_lstm_projection_matches_torch(bidirectional, generator, fast_calls):
    reference, fast = make_pair("LSTM", 5, 8, 2, proj_size=3, bidirectional=bidirectional)
    directions = 2 if bidirectional else 1
    input = randn(generator, 6, 2, 5)
    hx = _state("LSTM", generator, 2 * directions, 2, 8, proj=3)
    with torch.no_grad():
        output, (h, c) = fast(input, hx)
        expected, (h_ref, c_ref) = reference(input, hx)
    assert fast_calls == [True]
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c, c_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_fast_path_streaming_matches_torch(mode, generator, fast_calls):
    """An online model: one step per call, state carried over, against torch.nn on the whole
    sequence."""
    reference, fast = make_pair(mode, 16, 32)
    input = randn(generator, 20, 1, 16)
    state = None
    outputs = []
    with torch.inference_mode():
        for t in range(input.shape[0]):
            output, state = fast(input[t:t + 1], state)
            outputs.append(output)
        expected, expected_state = reference(input)
    assert fast_calls == [True] * input.shape[0]
    torch.testing.assert_close(torch.cat(outputs), expected, rtol=1e-5, atol=1e-5)
    for actual, wanted in zip(*(s if isinstance(s, tuple) else (s,) for s in (state, expected_state))):
        torch.testing.assert_close(actual, wanted, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_fast_path_taken_without_recorded_gradients(mode, fast_calls):
    _, fast = make_pair(mode, 5, 6)
    input = torch.randn(3, 2, 5)
    with torch.no_grad():
        fast(input)
    with torch.inference_mode():
        fast(input)
    fast.requires_grad_(False)  # a frozen model in grad mode records nothing either
    output, _ = fast(input)
    assert fast_calls == [True, True, True]
    assert output.grad_fn is None


class _Subclass(torch.Tensor):
    pass


class _PassThroughFunctionMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


class _PassThroughDispatchMode(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _declined_contexts():
    """(name, context manager factory, input transform) for calls the fast path must decline."""
    return [
        ("grad", contextlib.nullcontext, lambda x: x.requires_grad_()),
        ("autocast", lambda: torch.autocast("cpu", dtype=torch.bfloat16), lambda x: x),
        ("function mode", _PassThroughFunctionMode, lambda x: x),
        ("dispatch mode", _PassThroughDispatchMode, lambda x: x),
        ("subclass", torch.no_grad, lambda x: x.as_subclass(_Subclass)),
    ]


@pytest.mark.parametrize("context", _declined_contexts(), ids=lambda c: c[0])
@pytest.mark.parametrize("mode", MODES)
def test_fast_path_declines_special_calls(mode, context, fast_calls):
    _, make_context, transform = context
    reference, fast = make_pair(mode, 5, 6)
    input = torch.randn(3, 2, 5)
    with make_context():
        output, _ = fast(transform(input.clone()), None)
    assert fast_calls == [False]
    with torch.no_grad():
        expected, _ = reference(input)
    torch.testing.assert_close(output.float().detach(), expected, rtol=2e-2, atol=2e-2)


def test_fast_path_declines_under_vmap(fast_calls):
    _, fast = make_pair("GRU", 5, 6)
    inputs = torch.randn(3, 4, 2, 5)
    with torch.no_grad():
        batched = torch.func.vmap(lambda x: fast(x)[0])(inputs)
        looped = torch.stack([fast(x)[0] for x in inputs])
    assert fast_calls[0] is False and all(fast_calls[1:])
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-5)


def test_fast_path_declines_training_dropout_and_compile(fast_calls):
    _, fast = make_pair("LSTM", 5, 6, 2, dropout=0.5)
    input = torch.randn(3, 2, 5)
    with torch.no_grad():
        fast.train()
        fast(input)  # dropout between the layers: the regular path draws torch's masks
        fast.eval()
        fast(input)
        compiled = torch.compile(fast, backend="eager", fullgraph=True)
        compiled(input)
    assert fast_calls == [False, True, False]


def test_fast_path_declines_when_tracing(fast_calls):
    _, fast = make_pair("RNN_TANH", 5, 6)
    input = torch.randn(3, 2, 5)
    with torch.no_grad():
        traced = torch.jit.trace(fast, (input,), check_trace=False)
    assert fast_calls == [False]
    torch.testing.assert_close(traced(input)[0], fast(input)[0])


@pytest.mark.parametrize("mode", MODES)
def test_bad_input_without_grad_raises_like_torch(mode):
    reference, fast = make_pair(mode, 5, 6, 2)
    with torch.no_grad():
        for description, input, hx in _bad_inputs(mode):
            assert_same_error(lambda: reference(input, hx), lambda: fast(input, hx), description)


def test_replaced_weight_is_used(fast_calls):
    """A weight replaced by a plain tensor attribute (as parametrizations do) is not in
    _parameters: the fast path declines rather than read a stale one."""
    reference, fast = make_pair("RNN_TANH", 5, 6)
    new_weight = torch.randn(6, 6)
    del fast._parameters["weight_hh_l0"]
    fast.weight_hh_l0 = new_weight
    reference.weight_hh_l0 = torch.nn.Parameter(new_weight.clone())
    input = torch.randn(3, 2, 5)
    with torch.no_grad():
        output, _ = fast(input)
        expected, _ = reference(input)
    assert fast_calls == [False]
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", MODES)
def test_fast_path_strided_state_and_weights(mode, dtype, generator, fast_calls):
    """float32 and float64 calls run on raw storage (cpu_forward_raw): a strided initial state
    is made contiguous first, and a strided weight sends the call the op's own way; both still
    equal the regular path bitwise, and a second layer reads its own rows of the state."""
    _, fast = make_pair(mode, 5, 6, 2)
    fast = fast.to(dtype)
    input = randn(generator, 4, 3, 5, dtype=dtype)
    wide = _state(mode, generator, 2, 3, 12, dtype=dtype)
    hx = tuple(s[..., ::2] for s in wide) if mode == "LSTM" else wide[..., ::2]
    assert not (hx[0] if mode == "LSTM" else hx).is_contiguous()
    for strided_weight in (False, True):
        if strided_weight:
            w = fast.weight_hh_l1.detach()
            fast.weight_hh_l1 = torch.nn.Parameter(w.t().contiguous().t())
            assert not fast.weight_hh_l1.is_contiguous()
        with torch.no_grad():
            output, final = fast(input, hx)
        expected_output, expected_final = _regular(fast, input, hx)
        assert torch.equal(output, expected_output)
        for actual, expected in zip(*(f if isinstance(f, tuple) else (f,) for f in (final, expected_final))):
            assert torch.equal(actual, expected)
    assert fast_calls == [True, False, True, False]


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_fast_path_bf16_batch1_projection_equals_regular_path(steps, bidirectional, generator,
                                                              fast_calls):
    """bfloat16 at batch 1 runs on raw storage too (float32 copies in one buffer, W_hh read in
    bfloat16): with an LSTM projection and two layers, bitwise the op path's result."""
    _, fast = make_pair("LSTM", 5, 8, 2, proj_size=3, bidirectional=bidirectional)
    fast = fast.to(torch.bfloat16)
    directions = 2 if bidirectional else 1
    input = randn(generator, steps, 1, 5, dtype=torch.bfloat16)
    hx = _state("LSTM", generator, 2 * directions, 1, 8, proj=3, dtype=torch.bfloat16)
    with torch.no_grad():
        output, (h, c) = fast(input, hx)
    expected, (h_ref, c_ref) = _regular(fast, input, hx)
    assert fast_calls == [True, False]
    assert torch.equal(output, expected) and torch.equal(h, h_ref) and torch.equal(c, c_ref)
