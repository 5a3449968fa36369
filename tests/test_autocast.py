"""torch.autocast on the CPU: fastrnn's modules run in the autocast dtype (their forward ops
cast input, states and weights with torch's cached casts), gradients reach the float32
parameters, and the results stay within the half-precision rule of DESIGN.md.

Result dtypes are torch.nn's, which are not all bfloat16: torch's GRU, LSTMCell, GRUCell and its
LSTM on packed input or with proj_size keep a float32 state in float32 (csrc/ops/autocast.cpp).

torch.nn's LSTM on padded input without proj_size is one oneDNN layer, which computes in bfloat16
under autocast and returns bfloat16. On CPUs where oneDNN has no bfloat16 (no AVX-512, as AMD's
Zen 3) torch.nn cannot run it: float32 input raises oneDNN's "could not create a primitive
descriptor", and bfloat16 input takes torch's native path and returns float32 states. fastrnn
gives the oneDNN layer's results on every CPU. Those cases are checked against torch.nn computing
in bfloat16 itself (module, input and states cast to bfloat16, oneDNN off) on every CPU, and
against torch.nn under autocast where oneDNN has bfloat16."""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fastrnn
from utils import MODES, assert_within_half_precision_rule, make_pair, randn, run_with_grads

# CI reruns these under each lower FASTRNN_CPU_ISA (.ci/run).
pytestmark = pytest.mark.kernels

# Whether torch.nn can run its bfloat16 LSTM layer (oneDNN's) on this CPU: torch's own check.
ONEDNN_BFLOAT16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
NO_ONEDNN_BFLOAT16 = ("torch.nn's bfloat16 LSTM layer needs oneDNN bfloat16 (AVX-512: avx512bw, "
                      "avx512vl, avx512dq), which this CPU lacks")


def _is_onednn_layer(mode: str, kwargs: dict, packed: bool) -> bool:
    """Whether torch.nn runs this module as oneDNN's layer under CPU autocast."""
    return mode == "LSTM" and not packed and not kwargs.get("proj_size")


def _bfloat16(value):
    """value (a module, tensor, tuple of them or None) cast to bfloat16."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(_bfloat16(v) for v in value)
    return copy.deepcopy(value).to(torch.bfloat16) if isinstance(value, nn.Module) else \
        value.to(torch.bfloat16)


@contextmanager
def _torch_native_path():
    """torch.nn's RNNs on its native ATen path (no oneDNN), which runs on any CPU."""
    with warnings.catch_warnings():
        # flags() also sets oneDNN's TF32 switch, which warns that it is for Intel GPUs.
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        with torch.backends.mkldnn.flags(enabled=False):
            yield


@pytest.mark.parametrize("reference", ["autocast", "bfloat16"])
@pytest.mark.parametrize("mode", MODES)
def test_cpu_autocast_runs_in_bfloat16(mode, reference, generator):
    """fastrnn under autocast is within the half-precision rule of torch.nn's own bfloat16 error:
    torch.nn under autocast ("autocast"; its LSTM needs oneDNN bfloat16), or torch.nn computing in
    bfloat16 itself, weights, input and gradients cast, oneDNN off ("bfloat16"; any CPU)."""
    if reference == "autocast" and _is_onednn_layer(mode, {}, packed=False) and not ONEDNN_BFLOAT16:
        pytest.skip(NO_ONEDNN_BFLOAT16)
    torch_nn, fast = make_pair(mode, 5, 19, 2, bidirectional=True)
    x = randn(generator, 6, 3, 5)
    grad_output = randn(generator, 6, 3, 38)
    grad_state = [randn(generator, 4, 3, 19) for _ in range(2 if mode == "LSTM" else 1)]
    exact = run_with_grads(copy.deepcopy(torch_nn).double(), x.double(), None,
                           grad_output.double(), [g.double() for g in grad_state])
    if reference == "bfloat16":
        with _torch_native_path():
            theirs = run_with_grads(_bfloat16(torch_nn), _bfloat16(x), None, _bfloat16(grad_output),
                                    _bfloat16(tuple(grad_state)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, state = fast(x)
        if reference == "autocast":
            theirs = run_with_grads(torch_nn, x, None, grad_output, grad_state)
        ours = run_with_grads(fast, x, None, grad_output, grad_state)
    # torch.nn's GRU keeps its float32 state (and output) in float32; the others are bfloat16.
    expected = torch.float32 if mode == "GRU" else torch.bfloat16
    assert output.dtype == expected
    assert all(s.dtype == expected for s in (state if isinstance(state, tuple) else [state]))
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


def _dtypes(result) -> list:
    """The dtypes of a module's or cell's result, nested as the result is."""
    if isinstance(result, PackedSequence):
        return ["packed", result.data.dtype]
    if isinstance(result, tuple):
        return [_dtypes(r) for r in result]
    return result.dtype


MODULE_CASES = [("LSTM", {}), ("LSTM", {"proj_size": 3}), ("GRU", {}), ("GRU", {"bidirectional": True}),
                ("RNN_TANH", {}), ("RNN_RELU", {})]


@pytest.mark.parametrize("state_dtype", [None, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("mode, kwargs", MODULE_CASES)
def test_cpu_autocast_result_dtypes_match_torch(mode, kwargs, packed, input_dtype, state_dtype,
                                                generator):
    """Every module's output and final states under CPU autocast have torch.nn's dtypes, for
    padded and packed input, float32 or bfloat16 input, and no, float32 or bfloat16 state.
    Where torch.nn runs oneDNN's layer, the reference is also torch.nn computing in bfloat16 (on
    every CPU), and torch.nn under autocast only where oneDNN has bfloat16."""
    torch_nn, fast = make_pair(mode, 5, 7, 2, **kwargs)
    directions = 2 if kwargs.get("bidirectional") else 1
    x = randn(generator, 4, 3, 5).to(input_dtype)
    hx = None
    if state_dtype is not None:
        h = randn(generator, 2 * directions, 3, kwargs.get("proj_size") or 7).to(state_dtype)
        hx = (h, randn(generator, 2 * directions, 3, 7).to(state_dtype)) if mode == "LSTM" else h
    lengths = torch.tensor([4, 2, 1])
    input = pack_padded_sequence(x, lengths) if packed else x
    references = []
    if _is_onednn_layer(mode, kwargs, packed):
        with _torch_native_path():
            references.append(_bfloat16(torch_nn)(_bfloat16(x), _bfloat16(hx)))
    if ONEDNN_BFLOAT16 or not _is_onednn_layer(mode, kwargs, packed):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            references.append(torch_nn(input, hx))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual = fast(input, hx)
    for expected in references:
        assert _dtypes(actual) == _dtypes(expected)
        # Same numbers as torch up to bfloat16 rounding of what both round (a scale-aware bound).
        data = [actual[0].data if packed else actual[0], expected[0].data if packed else expected[0]]
        torch.testing.assert_close(data[0].double(), data[1].double(), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("state_dtype", [None, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cpu_autocast_cell_result_dtypes_match_torch(name, input_dtype, state_dtype, generator):
    reference = getattr(nn, name)(5, 7)
    fast = getattr(fastrnn, name)(5, 7)
    fast.load_state_dict(reference.state_dict())
    x = randn(generator, 3, 5).to(input_dtype)
    hx = None
    if state_dtype is not None:
        hx = randn(generator, 3, 7).to(state_dtype)
        if name == "LSTMCell":
            hx = (hx, randn(generator, 3, 7).to(state_dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = reference(x, hx)
        actual = fast(x, hx)
    assert _dtypes(actual) == _dtypes(expected)
    first = [r[0] if isinstance(r, tuple) else r for r in (actual, expected)]
    torch.testing.assert_close(first[0].double(), first[1].double(), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("mode, kwargs", [("GRU", {}), ("LSTM", {"proj_size": 4})])
def test_cpu_autocast_float32_state_within_half_precision_rule(mode, kwargs, generator):
    """Where torch keeps a float32 state (GRU; LSTM with projection), fastrnn's outputs and
    gradients are within DESIGN.md's half-precision rule, and the gradients are float32."""
    reference, fast = make_pair(mode, 6, 9, 2, **kwargs)
    out = kwargs.get("proj_size") or 9
    x = randn(generator, 5, 3, 6)
    grad_output = randn(generator, 5, 3, out)
    grad_state = [randn(generator, 2, 3, out)] + ([randn(generator, 2, 3, 9)] if mode == "LSTM" else [])
    exact = run_with_grads(copy.deepcopy(reference).double(), x.double(), None,
                           grad_output.double(), [g.double() for g in grad_state])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        theirs = run_with_grads(reference, x, None, grad_output, grad_state)
        ours = run_with_grads(fast, x, None, grad_output, grad_state)
    assert {k: v.dtype for k, v in ours.items()} == {k: v.dtype for k, v in theirs.items()}
    assert all(v.dtype == torch.float32 for k, v in ours.items() if k.startswith("grad"))
    assert_within_half_precision_rule(ours, theirs, exact)
