"""fastrnn on CUDA: parity with torch.nn (cuDNN) in float32 and float64, float16/bfloat16 within
twice torch's own error, gradcheck and opcheck on the GPU, autocast, CUDA-graph capture and no
host synchronization. Marked `cuda`; skipped where there is no GPU, and failing (not skipping)
where there is a GPU but fastrnn was built without CUDA."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from fastrnn import _C

from utils import MODES, assert_results_close, assert_within_half_precision_rule, make_pair, run_with_grads

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
DEVICE = "cuda"


@pytest.fixture(autouse=True)
def _exact_float32():
    """Compare float32 with float32: no TF32 in cuDNN's RNNs or in matrix products."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_extension_was_built_with_cuda():
    assert _C.cuda_built(), "a GPU is present but fastrnn was built without CUDA"


def _randn(generator, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype).to(DEVICE)


def _states(generator, mode, shape, dtype):
    states = tuple(_randn(generator, *shape, dtype=dtype) for _ in range(2 if mode == "LSTM" else 1))
    return states if mode == "LSTM" else states[0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("initial_state", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("mode", MODES)
def test_module_matches_torch_on_cuda(mode, num_layers, bidirectional, batch_first, bias,
                                      initial_state, dtype, generator):
    reference, fast = make_pair(mode, 5, 19, num_layers, bias=bias, batch_first=batch_first,
                                bidirectional=bidirectional, dtype=dtype)
    reference.to(DEVICE)
    fast.to(DEVICE)
    directions = 2 if bidirectional else 1
    shape = (3, 6, 5) if batch_first else (6, 3, 5)
    x = _randn(generator, *shape, dtype=dtype)
    state_shape = (num_layers * directions, 3, 19)
    hx = _states(generator, mode, state_shape, dtype) if initial_state else None
    grad_output = _randn(generator, *shape[:2], directions * 19, dtype=dtype)
    grad_state = [_randn(generator, *state_shape, dtype=dtype) for _ in range(2 if mode == "LSTM" else 1)]
    expected = run_with_grads(reference, x, hx, grad_output, grad_state)
    actual = run_with_grads(fast, x, hx, grad_output, grad_state)
    assert all(v.is_cuda for v in actual.values())
    assert_results_close(actual, expected, dtype)


@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("mode", MODES)
def test_packed_sequence_matches_torch_on_cuda(mode, enforce_sorted, generator):
    dtype = torch.float64
    reference, fast = make_pair(mode, 5, 7, 2, bidirectional=True, dtype=dtype)
    reference.to(DEVICE)
    fast.to(DEVICE)
    lengths = torch.tensor([6, 2, 5, 1])
    padded = _randn(generator, 6, 4, 5, dtype=dtype)

    def run(module):
        x = padded.clone().requires_grad_()
        packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
        output, final = module(packed)
        finals = list(final) if mode == "LSTM" else [final]
        loss = output.data.sin().sum() + sum((f * (i + 2)).sum() for i, f in enumerate(finals))
        return [output.data, *finals, *torch.autograd.grad(loss, [x, *module.parameters()])]

    for a, b in zip(run(fast), run(reference)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_lstm_projection_matches_torch_on_cuda(bidirectional, generator):
    dtype = torch.float64
    reference, fast = make_pair("LSTM", 5, 9, 2, bidirectional=bidirectional, proj_size=4,
                                dtype=dtype)
    reference.to(DEVICE)
    fast.to(DEVICE)
    directions = 2 if bidirectional else 1
    x = _randn(generator, 6, 3, 5, dtype=dtype)
    grad_output = _randn(generator, 6, 3, 4 * directions, dtype=dtype)
    grad_state = [_randn(generator, 2 * directions, 3, 4, dtype=dtype),
                  _randn(generator, 2 * directions, 3, 9, dtype=dtype)]
    assert_results_close(run_with_grads(fast, x, None, grad_output, grad_state),
                         run_with_grads(reference, x, None, grad_output, grad_state), dtype)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_match_torch_on_cuda(name, generator):
    reference = getattr(torch.nn, name)(5, 7, dtype=torch.float64).to(DEVICE)
    fast = getattr(fastrnn, name)(5, 7, dtype=torch.float64).to(DEVICE)
    fast.load_state_dict(reference.state_dict())
    x = _randn(generator, 3, 5, dtype=torch.float64)
    outs = []
    for module in (reference, fast):
        out = module(x)
        out = list(out) if isinstance(out, tuple) else [out]
        outs.append([*out, *torch.autograd.grad(sum(o.sum() for o in out), list(module.parameters()))])
    for a, b in zip(outs[1], outs[0]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("mode", MODES)
def test_half_precision_within_twice_cudnn_error(mode, dtype, generator):
    reference, fast = make_pair(mode, 32, 64, 2, bidirectional=True)
    reference.to(DEVICE, dtype)
    fast.load_state_dict(reference.state_dict())
    fast.to(DEVICE, dtype)
    x = _randn(generator, 20, 8, 32, dtype=dtype)
    grad_output = _randn(generator, 20, 8, 128, dtype=dtype)
    grad_state = [_randn(generator, 4, 8, 64, dtype=dtype) for _ in range(2 if mode == "LSTM" else 1)]
    exact = run_with_grads(copy.deepcopy(reference).double(), x.double(), None,
                           grad_output.double(), [g.double() for g in grad_state])
    theirs = run_with_grads(reference, x, None, grad_output, grad_state)
    ours = run_with_grads(fast, x, None, grad_output, grad_state)
    assert all(v.dtype == dtype for v in ours.values())
    assert_within_half_precision_rule(ours, theirs, exact)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_gradcheck_and_opcheck_on_cuda(cell, packed, generator):
    from test_ops import forward_op, make_args

    args = make_args(cell, generator, batch=2, input_size=3, hidden=4, steps=3, packed=packed,
                     requires_grad=False, proj=2 if cell == "lstm" else 0)
    args = {k: (v.to(DEVICE).requires_grad_() if isinstance(v, torch.Tensor) and k != "batch_sizes"
                else v) for k, v in args.items()}
    names = [k for k, v in args.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    n_results = 3 if cell == "lstm" else 2

    def fn(*tensors):
        return forward_op(cell)(*dict(args, **dict(zip(names, tensors))).values())[:n_results]

    assert torch.autograd.gradcheck(fn, [args[k] for k in names])
    torch.library.opcheck(forward_op(cell), tuple(args.values()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("mode", MODES)
def test_autocast_runs_in_the_autocast_dtype(mode, dtype, generator):
    reference, fast = make_pair(mode, 16, 32, 2)
    reference.to(DEVICE)
    fast.to(DEVICE)
    x = _randn(generator, 10, 4, 16).requires_grad_()
    with torch.autocast("cuda", dtype=dtype):
        expected, _ = reference(x)
        actual, _ = fast(x)
    assert actual.dtype == expected.dtype == dtype
    torch.testing.assert_close(actual.float(), expected.float(), rtol=2e-2, atol=2e-2)
    actual.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in fast.parameters())


@pytest.mark.parametrize("mode", MODES)
def test_forward_and_backward_never_synchronize(mode, generator):
    _, fast = make_pair(mode, 16, 32, 2, bidirectional=True)
    fast.to(DEVICE)
    x = _randn(generator, 10, 4, 16).requires_grad_()
    packed = pack_padded_sequence(_randn(generator, 10, 4, 16), torch.tensor([10, 7, 3, 2]))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fast(x)[0].sum().backward()
        fast(packed)[0].data.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("mode", MODES)
def test_cuda_graph_capture_replays_forward_and_backward(mode, generator):
    _, fast = make_pair(mode, 16, 32, 2, bidirectional=True)
    fast.to(DEVICE)
    static_x = _randn(generator, 10, 4, 16)
    params = list(fast.parameters())

    def step():
        out, _ = fast(static_x)
        loss = out.pow(2).sum()
        return (loss, *torch.autograd.grad(loss, params))

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up outside the graph (allocations, handles)
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_results = step()
    for _ in range(2):
        new_x = _randn(generator, 10, 4, 16)
        static_x.copy_(new_x)
        graph.replay()
        torch.cuda.synchronize()
        expected = step()
        for a, b in zip(static_results, expected):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
