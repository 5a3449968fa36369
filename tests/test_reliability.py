"""Reliability under bad or unusual input, determinism and concurrency (issue 7):

* NaN and Inf propagate exactly as in torch.nn (outputs, final states and every gradient);
* non-contiguous inputs, states and weights give torch.nn's results;
* mixing devices ('meta' with CPU) or dtypes is a clear error, never a silent result;
* batch 0 and T=1 behave as torch.nn; an allocation that cannot be satisfied is a RuntimeError;
* the same call gives bitwise-identical outputs and gradients at a fixed thread count;
* calls from several Python threads at once give the sequential results.

Bounded memory on long sequences and the leak check live in test_memory.py.
"""

from __future__ import annotations

import copy
import os
import threading

import pytest
import torch
from torch import nn
from torch.nn import Parameter

import fastrnn
from utils import (MODES, TOLERANCES, flatten_state, make_pair, randn, run_with_grads,
                   tolerances)

# CI reruns these under each lower FASTRNN_CPU_ISA (.ci/run).
pytestmark = pytest.mark.kernels

CELLS = ["RNNCell", "LSTMCell", "GRUCell"]


def _states(generator, mode, layers, batch, hidden, dtype=torch.float64):
    h = randn(generator, layers, batch, hidden, dtype=dtype)
    return (h, randn(generator, layers, batch, hidden, dtype=dtype)) if mode == "LSTM" else h


def _grads_for(reference, generator, input, hx):
    """Random output and final-state gradients shaped like reference's results."""
    with torch.no_grad():
        output, final = reference(input, hx)
    return randn(generator, *output.shape, dtype=output.dtype), [
        randn(generator, *f.shape, dtype=f.dtype) for f in flatten_state(final)]


def _assert_same(actual: dict, expected: dict, dtype, equal_nan=False) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], **tolerances(dtype, expected[key]),
                                   equal_nan=equal_nan, msg=lambda m, key=key: f"{key}: {m}")


# ---- NaN and Inf ----

def _poisoned(generator, mode, where, dtype):
    """A module pair and input/state with NaN, +Inf and -Inf planted in `where`."""
    reference, fast = make_pair(mode, 4, 5, 2, dtype=dtype)
    x = randn(generator, 6, 3, 4, dtype=dtype)
    hx = _states(generator, mode, 2, 3, 5, dtype)
    if where == "input":
        x[1, 0, 2], x[2, 1, 0], x[3, 2, 1] = float("nan"), float("inf"), -float("inf")
    elif where == "input-inf":  # no NaN: saturating gates must give finite outputs, as torch's
        x[1, 0, 2], x[2, 1, 0], x[3, 2, 3], x[4, 0, 0] = float("inf"), -float("inf"), 1e30, -1e30
    elif where == "state":
        first = hx[0] if mode == "LSTM" else hx
        first[0, 1, 3] = float("nan")
        first[1, 2, 0] = float("inf")
    elif where == "weight":
        with torch.no_grad():
            for m in (reference, fast):
                m.weight_hh_l1[2, 1] = float("nan")
                m.weight_ih_l0[0, 0] = float("inf")
    return reference, fast, x, hx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("where", ["input", "input-inf", "state", "weight"])
@pytest.mark.parametrize("mode", MODES)
def test_nan_and_inf_propagate_like_torch(mode, where, dtype, generator):
    reference, fast, x, hx = _poisoned(generator, mode, where, dtype)
    grad_output, grad_state = _grads_for(reference, generator, x, hx)
    expected = run_with_grads(reference, x, hx, grad_output, grad_state)
    actual = run_with_grads(fast, x, hx, grad_output, grad_state)
    # Same NaN positions, same infinities, same finite values, gradients included.
    _assert_same(actual, expected, dtype, equal_nan=True)
    if where == "input-inf":
        assert torch.isfinite(actual["output"]).all() == torch.isfinite(expected["output"]).all()
    with torch.no_grad():  # the C++ inference fast path
        out_fast, _ = fast(x, hx)
        out_ref, _ = reference(x, hx)
    torch.testing.assert_close(out_fast, out_ref, **tolerances(dtype, out_ref), equal_nan=True)


@pytest.mark.parametrize("name", CELLS)
def test_cells_propagate_nan_and_inf_like_torch(name, generator):
    reference = getattr(nn, name)(4, 5, dtype=torch.float64)
    fast = getattr(fastrnn, name)(4, 5, dtype=torch.float64)
    fast.load_state_dict(reference.state_dict())
    x = randn(generator, 3, 4)
    x[0, 1], x[1, 2], x[2, 3] = float("nan"), float("inf"), -float("inf")
    x = x.double()
    expected, actual = reference(x), fast(x)
    for a, e in zip(flatten_state(actual), flatten_state(expected)):
        torch.testing.assert_close(a, e, equal_nan=True, **tolerances(torch.float64, e))


# ---- strides ----

def _strided(tensor: torch.Tensor, kind: str) -> torch.Tensor:
    """The same values as `tensor`, laid out non-contiguously."""
    if kind == "transposed":  # a transposed view of a contiguous tensor of the swapped shape
        return tensor.transpose(0, 1).contiguous().transpose(0, 1)
    if kind == "every-other":  # [::2] of a tensor twice as long in the last dimension
        wide = torch.empty(*tensor.shape[:-1], 2 * tensor.shape[-1], dtype=tensor.dtype)
        wide[..., ::2] = tensor
        wide[..., 1::2] = float("nan")  # anything read from the gaps shows up
        return wide[..., ::2]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["transposed", "every-other"])
@pytest.mark.parametrize("mode", MODES)
def test_strided_inputs_states_and_weights_match_torch(mode, kind, generator):
    dtype = torch.float64
    reference, fast = make_pair(mode, 4, 6, 2, bidirectional=True, dtype=dtype)
    # Every weight a non-contiguous view (e.g. a transposed or sliced tensor made a Parameter).
    for name, weight in list(fast.named_parameters()):
        view = _strided(weight.detach(), kind) if weight.dim() == 2 or kind == "every-other" \
            else weight.detach()
        setattr(fast, name, Parameter(view))
    assert any(not p.is_contiguous() for p in fast.parameters())
    x = _strided(randn(generator, 5, 3, 4, dtype=dtype), kind)
    hx = _states(generator, mode, 4, 3, 6, dtype)
    hx = tuple(_strided(h, kind) for h in hx) if mode == "LSTM" else _strided(hx, kind)
    assert not x.is_contiguous()
    grad_output, grad_state = _grads_for(reference, generator, x, hx)
    expected = run_with_grads(reference, x.contiguous(), hx, grad_output, grad_state)
    actual = run_with_grads(fast, x, hx, grad_output, grad_state)
    _assert_same(actual, expected, dtype)
    with torch.no_grad():
        torch.testing.assert_close(fast(x, hx)[0], expected["output"],
                                   **tolerances(dtype, expected["output"]))
    # batch_first input that is a transposed time-major tensor, and a [::2] time slice.
    reference.batch_first = fast.batch_first = True
    long = randn(generator, 10, 3, 4, dtype=dtype)
    for input in (long.transpose(0, 1), long[::2].transpose(0, 1), long.expand(10, 3, 4)[:, :1].transpose(0, 1)):
        with torch.no_grad():
            torch.testing.assert_close(fast(input)[0], reference(input.contiguous())[0],
                                       **TOLERANCES[dtype])


@pytest.mark.parametrize("name", CELLS)
def test_cells_take_strided_input_states_and_weights(name, generator):
    reference = getattr(nn, name)(4, 5, dtype=torch.float64)
    fast = getattr(fastrnn, name)(4, 5, dtype=torch.float64)
    fast.load_state_dict(reference.state_dict())
    fast.weight_ih = Parameter(_strided(fast.weight_ih.detach(), "transposed"))
    fast.weight_hh = Parameter(_strided(fast.weight_hh.detach(), "every-other"))
    x = _strided(randn(generator, 3, 4, dtype=torch.float64), "every-other")
    h = _strided(randn(generator, 3, 5, dtype=torch.float64), "transposed")
    hx = (h, _strided(randn(generator, 3, 5, dtype=torch.float64), "every-other")) \
        if name == "LSTMCell" else h
    for a, e in zip(flatten_state(fast(x, hx)), flatten_state(reference(x, hx))):
        torch.testing.assert_close(a, e, **tolerances(torch.float64, e))


# ---- devices and dtypes ----

@pytest.mark.parametrize("what", ["input", "state", "weight", "module"])
@pytest.mark.parametrize("mode", MODES)
def test_mixing_devices_is_a_clear_error(mode, what, generator):
    """'meta' mixed with CPU (the only other device here): torch.nn raises; fastrnn must too,
    never return uninitialised tensors (a meta argument dispatches to the fake kernel)."""
    reference, fast = make_pair(mode, 4, 6)
    x = randn(generator, 3, 2, 4)
    hx = _states(generator, mode, 1, 2, 6, torch.float32)
    if what == "input":
        x = x.to("meta")
    elif what == "state":
        hx = tuple(h.to("meta") for h in hx) if mode == "LSTM" else hx.to("meta")
    elif what == "weight":
        for m in (reference, fast):
            m.weight_hh_l0 = Parameter(m.weight_hh_l0.detach().to("meta"))
    else:
        reference.to("meta")
        fast.to("meta")
    with pytest.raises(RuntimeError, match="device"):
        reference(x, hx)
    for grad in (True, False):
        with torch.set_grad_enabled(grad), \
                pytest.raises(RuntimeError, match="all tensors must be on the same device"):
            fast(x, hx)


def test_all_meta_runs_like_torch():
    """All-meta (shape inference) stays allowed, as torch.nn's."""
    for mode in MODES:
        reference, fast = make_pair(mode, 4, 6, device="meta")
        x = torch.empty(3, 2, 4, device="meta")
        expected, actual = reference(x), fast(x)
        assert actual[0].device.type == "meta" and actual[0].shape == expected[0].shape


@pytest.mark.parametrize("name", CELLS)
def test_cells_mixing_devices_is_a_clear_error(name):
    reference, fast = getattr(nn, name)(4, 5), getattr(fastrnn, name)(4, 5)
    x = torch.randn(2, 4, device="meta")
    with pytest.raises(RuntimeError):
        reference(x)
    with pytest.raises(RuntimeError, match="all tensors must be on the same device"):
        fast(x)


@pytest.mark.parametrize("what", ["input", "state", "weight"])
@pytest.mark.parametrize("mode", MODES)
def test_mixing_dtypes_raises_where_torch_raises(mode, what, generator):
    reference, fast = make_pair(mode, 4, 6)
    x = randn(generator, 3, 2, 4)
    hx = _states(generator, mode, 1, 2, 6, torch.float32)
    if what == "input":
        x = x.double()
    elif what == "state":
        hx = tuple(h.double() for h in hx) if mode == "LSTM" else hx.double()
    else:
        for m in (reference, fast):
            m.weight_hh_l0 = Parameter(m.weight_hh_l0.detach().double())
    with pytest.raises((RuntimeError, ValueError)) as expected:
        reference(x, hx)
    for grad in (True, False):
        with torch.set_grad_enabled(grad), pytest.raises(type(expected.value), match="dtype"):
            fast(x, hx)


# ---- batch 0, T = 1 ----

@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_batch_zero_matches_torch(mode, with_state, generator):
    reference, fast = make_pair(mode, 4, 6, 2, bidirectional=True, dtype=torch.float64)
    x = randn(generator, 5, 0, 4, dtype=torch.float64)
    hx = _states(generator, mode, 4, 0, 6) if with_state else None
    grad_output = torch.zeros(5, 0, 12, dtype=torch.float64)
    grad_state = [torch.zeros(4, 0, 6, dtype=torch.float64)] * (2 if mode == "LSTM" else 1)
    expected = run_with_grads(reference, x, hx, grad_output, grad_state)
    actual = run_with_grads(fast, x, hx, grad_output, grad_state)
    assert {k: v.shape for k, v in actual.items()} == {k: v.shape for k, v in expected.items()}
    _assert_same(actual, expected, torch.float64)  # parameter gradients: zeros
    with torch.no_grad():
        assert fast(x, hx)[0].shape == reference(x, hx)[0].shape


@pytest.mark.parametrize("name", CELLS)
def test_cells_batch_zero_matches_torch(name):
    reference, fast = getattr(nn, name)(4, 5), getattr(fastrnn, name)(4, 5)
    x = torch.randn(0, 4, requires_grad=True)
    expected, actual = flatten_state(reference(x)), flatten_state(fast(x))
    assert [a.shape for a in actual] == [e.shape for e in expected]
    sum(a.sum() for a in actual).backward()
    assert x.grad.shape == (0, 4)


@pytest.mark.parametrize("mode", MODES)
def test_single_step_matches_torch(mode, generator):
    reference, fast = make_pair(mode, 4, 6, 2, dtype=torch.float64)
    x = randn(generator, 1, 3, 4, dtype=torch.float64)
    hx = _states(generator, mode, 2, 3, 6)
    grad_output, grad_state = _grads_for(reference, generator, x, hx)
    _assert_same(run_with_grads(fast, x, hx, grad_output, grad_state),
                 run_with_grads(reference, x, hx, grad_output, grad_state), torch.float64)


# ---- allocations that cannot be satisfied ----

# [T, B, I] of 2^24 x 2^24 x 4 float32 elements: 4 PiB, beyond any address space, so the
# allocation fails outright (no overcommit, nothing touched). The expanded input itself is 16 B.
HUGE = (2**24, 2**24, 4)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_unsatisfiable_allocation_is_a_runtime_error(mode, grad):
    _, fast = make_pair(mode, 4, 3)
    x = torch.randn(1, 1, 4).expand(*HUGE)
    with torch.set_grad_enabled(grad), \
            pytest.raises(RuntimeError, match="(?i)allocat|memory|overflow"):
        fast(x)


def test_unsatisfiable_allocation_in_the_ops_is_a_runtime_error():
    x = torch.randn(1, 1, 4).expand(*HUGE)
    w_ih, w_hh = torch.randn(12, 4), torch.randn(12, 4)  # GRU, hidden 4
    with pytest.raises(RuntimeError, match="(?i)allocat|memory|overflow"):
        torch.ops.fastrnn.gru_forward(x, None, w_ih, w_hh, None, None, None, False, True)
    # A hidden state too big to allocate: batch 2^40 rows of a one-step input.
    x = torch.randn(1, 1, 4).expand(1, 2**40, 4)
    with pytest.raises(RuntimeError, match="(?i)allocat|memory|overflow"):
        torch.ops.fastrnn.lstm_forward(x, None, None, torch.randn(12, 4), torch.randn(12, 3),
                                       None, None, None, None, False, False)


# ---- determinism ----

@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", MODES)
def test_bitwise_deterministic_at_a_fixed_thread_count(mode, threads, generator):
    """Shapes large enough that the kernels split work across threads (B=64, H=256)."""
    _, fast = make_pair(mode, 64, 256, 2, bidirectional=mode == "GRU")
    directions = 2 if mode == "GRU" else 1
    x = randn(generator, 12, 64, 64)
    hx = _states(generator, mode, 2 * directions, 64, 256, torch.float32)
    grad_output = randn(generator, 12, 64, 256 * directions)
    grad_state = [randn(generator, 2 * directions, 64, 256) for _ in flatten_state(hx)]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        runs = [run_with_grads(fast, x, hx, grad_output, grad_state) for _ in range(2)]
        with torch.no_grad():
            inference = [fast(x, hx)[0] for _ in range(2)]
    finally:
        torch.set_num_threads(previous)
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key
    assert torch.equal(inference[0], inference[1])
    assert torch.equal(inference[0], runs[0]["output"])


@pytest.mark.parametrize("mode", MODES)
def test_more_threads_than_cores_match_torch(mode, generator):
    """Twice as many intra-op threads as cores: the threads of a step wait for partners that
    are descheduled, past the schedule's spinning into its sleeping wait (stage_team.h), in the
    forward steps and in backward. Results still equal torch.nn's."""
    reference, fast = make_pair(mode, 32, 192, dtype=torch.float64)
    x = randn(generator, 40, 1, 32, dtype=torch.float64)
    hx = _states(generator, mode, 1, 1, 192)
    grad_output, grad_state = _grads_for(reference, generator, x, hx)
    expected = run_with_grads(reference, x, hx, grad_output, grad_state)
    previous = torch.get_num_threads()
    torch.set_num_threads(max(4, 2 * (os.cpu_count() or 1)))
    try:
        actual = run_with_grads(fast, x, hx, grad_output, grad_state)
    finally:
        torch.set_num_threads(previous)
    _assert_same(actual, expected, torch.float64)


# ---- concurrency ----

@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_concurrent_calls_match_sequential(mode, grad, generator):
    """Several Python threads call the same module at once on different inputs (the no-grad
    calls take the C++ fast path, which releases the GIL). Each thread's results must equal
    the sequential ones: the kernels hold no global mutable state."""
    dtype = torch.float64
    _, fast = make_pair(mode, 8, 32, 2, bidirectional=True, dtype=dtype)
    cell_name = {"LSTM": "LSTMCell", "GRU": "GRUCell"}.get(mode, "RNNCell")
    cell = getattr(fastrnn, cell_name)(8, 32, dtype=dtype)
    count, rounds = 4, 6
    inputs = [randn(generator, 7 + i, 3 + i, 8, dtype=dtype) for i in range(count)]

    def call(i):
        x = inputs[i].clone().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            output, final = fast(x)
            step = cell(x[0])
            results = [output, *flatten_state(final), *flatten_state(step)]
            if grad:
                results += torch.autograd.grad(sum(r.sum() for r in results),
                                               [x, *fast.parameters()])
        return [r.detach() for r in results]

    sequential = [call(i) for i in range(count)]
    errors, results = [], {}
    barrier = threading.Barrier(count)

    def worker(i):
        try:
            barrier.wait()
            results[i] = [call(i) for _ in range(rounds)]
        except BaseException as error:  # reported below, on the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(count):
        for run in results[i]:
            for a, e in zip(run, sequential[i]):
                torch.testing.assert_close(a, e, **tolerances(dtype, e))


def test_modules_and_ops_hold_no_state_between_calls(generator):
    """A call with other shapes in between does not change a call's result (no cached
    buffers or packed weights keyed on something that can go stale)."""
    _, fast = make_pair("LSTM", 6, 16, dtype=torch.float64)
    x = randn(generator, 5, 2, 6, dtype=torch.float64)
    with torch.no_grad():
        first = fast(x)[0].clone()
        fast(randn(generator, 9, 7, 6, dtype=torch.float64))
        other = copy.deepcopy(fast)
        with torch.no_grad():
            fast.weight_hh_l0.mul_(0.5)
        fast(x)
        fast.load_state_dict(other.state_dict())
        assert torch.equal(fast(x)[0], first)
