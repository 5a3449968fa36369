"""fastrnn's modules against torch.nn loaded with the same state_dict: outputs, final states and
the gradients of the input, the initial states and every parameter, over the whole
configuration matrix."""

import copy

import pytest
import torch

import fastrnn
from fastrnn.info import bf16_products

from utils import (MODES, assert_results_close, make_pair, randn, run_with_grads,
                   tolerances)

# CI reruns these under each lower FASTRNN_CPU_ISA (.ci/run).
pytestmark = pytest.mark.kernels

INPUT, HIDDEN, STEPS, BATCH = 5, 19, 5, 3  # HIDDEN 19: full SIMD blocks plus a masked tail


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("initial_state", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
def test_module_matches_torch(mode, num_layers, bidirectional, batch_first, bias, initial_state,
                              dtype, generator):
    reference, fast = make_pair(mode, INPUT, HIDDEN, num_layers, bias=bias, batch_first=batch_first,
                                bidirectional=bidirectional, dtype=dtype)
    directions = 2 if bidirectional else 1
    shape = (BATCH, STEPS, INPUT) if batch_first else (STEPS, BATCH, INPUT)
    x = randn(generator, *shape, dtype=dtype)
    state_shape = (num_layers * directions, BATCH, HIDDEN)
    n_states = 2 if mode == "LSTM" else 1
    hx = None
    if initial_state:
        states = tuple(randn(generator, *state_shape, dtype=dtype) for _ in range(n_states))
        hx = states if mode == "LSTM" else states[0]
    out_shape = shape[:2] + (directions * HIDDEN,)
    grad_output = randn(generator, *out_shape, dtype=dtype)
    grad_state = [randn(generator, *state_shape, dtype=dtype) for _ in range(n_states)]

    expected = run_with_grads(reference, x, hx, grad_output, grad_state)
    actual = run_with_grads(fast, x, hx, grad_output, grad_state)
    assert_results_close(actual, expected, dtype)


@pytest.mark.parametrize("batch, steps", [(2, 16), (8, 4), (8, 12), (8, 13), (9, 1), (3, 40)],
                         ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_weight_layouts_match_torch(mode, batch, steps, generator):
    """Both sides of the rule that picks W_hh's layout (cpu/tuning.h, reads_weights_as_stored):
    as stored for short calls of a few rows (2 x 16, 8 x 4, 8 x 12 at the float32 bar), else
    packed into panels (8 x 13, 9 x 1, 3 x 40), with a hidden size (37) that leaves the last
    panel partly filled and the packing's last tile of k partial."""
    reference, fast = make_pair(mode, 21, 37, 1)
    x = randn(generator, steps, batch, 21)
    n_states = 2 if mode == "LSTM" else 1
    states = tuple(randn(generator, 1, batch, 37) for _ in range(n_states))
    hx = states if mode == "LSTM" else states[0]
    grad_output = randn(generator, steps, batch, 37)
    grad_state = [randn(generator, 1, batch, 37) for _ in range(n_states)]
    expected = run_with_grads(reference, x, hx, grad_output, grad_state)
    actual = run_with_grads(fast, x, hx, grad_output, grad_state)
    assert_results_close(actual, expected, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("batch, steps", [(1, 7), (1, 1), (3, 2)], ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_stored_weight_dot_products_match_torch(mode, batch, steps, dtype, generator):
    """Calls that read the weights as stored form each gate row's dot product in passes over
    stretches of columns (fused_kernels_impl.h, row_dots): sizes that take every kind of pass,
    W_hh's 300 columns (16 + 2 vectors and a masked 12) and W_ih's 530 (16 + 16 + 1 and a
    masked 2; a single-step call computes x W_ih^T in the step too)."""
    torch.set_num_threads(2)
    reference, fast = make_pair(mode, 530, 300, 1, dtype=dtype)
    x = randn(generator, steps, batch, 530, dtype=dtype)
    n_states = 2 if mode == "LSTM" else 1
    states = tuple(randn(generator, 1, batch, 300, dtype=dtype) for _ in range(n_states))
    hx = states if mode == "LSTM" else states[0]
    grad_output = randn(generator, steps, batch, 300, dtype=dtype)
    grad_state = [randn(generator, 1, batch, 300, dtype=dtype) for _ in range(n_states)]
    expected = run_with_grads(reference, x, hx, grad_output, grad_state)
    actual = run_with_grads(fast, x, hx, grad_output, grad_state)
    assert_results_close(actual, expected, dtype)


@pytest.mark.parametrize("mode", MODES)
def test_threaded_steps_match_torch(mode, generator):
    """Steps big enough (batch * hidden >= 32768) to be split across threads."""
    torch.set_num_threads(2)
    reference, fast = make_pair(mode, 3, 512, 1)
    x = randn(generator, 3, 70, 3)
    grad_output = randn(generator, 3, 70, 512)
    grad_state = [randn(generator, 1, 70, 512) for _ in range(2 if mode == "LSTM" else 1)]
    expected = run_with_grads(reference, x, None, grad_output, grad_state)
    actual = run_with_grads(fast, x, None, grad_output, grad_state)
    assert_results_close(actual, expected, torch.float32)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("batch", [4, 5, 13, 32])
@pytest.mark.parametrize("mode", MODES)
def test_steps_with_input_projection_match_torch(mode, batch, dtype, threads, generator):
    """Steps of 4 or more rows, in calls of 256 rows or more, compute x W_ih^T in the step
    kernel, from W_ih packed like W_hh (cpu/tuning.h, kFusedInputRows, kFusedInputCallRows):
    batches at the bar and past it, whose tiles of rows split unevenly (5, 13, 32), an input
    size with a masked tail in both layers of a bidirectional stack, and the threaded split of
    the panels."""
    torch.set_num_threads(threads)
    input_size, hidden = 21, 37
    steps = -(-256 // batch)  # the fewest steps that make the call fused
    reference, fast = make_pair(mode, input_size, hidden, 2, bidirectional=True, dtype=dtype)
    x = randn(generator, steps, batch, input_size, dtype=dtype)
    n_states = 2 if mode == "LSTM" else 1
    states = tuple(randn(generator, 4, batch, hidden, dtype=dtype) for _ in range(n_states))
    hx = states if mode == "LSTM" else states[0]
    grad_output = randn(generator, steps, batch, 2 * hidden, dtype=dtype)
    grad_state = [randn(generator, 4, batch, hidden, dtype=dtype) for _ in range(n_states)]
    expected = run_with_grads(reference, x, hx, grad_output, grad_state)
    actual = run_with_grads(fast, x, hx, grad_output, grad_state)
    assert_results_close(actual, expected, dtype)
    with torch.no_grad():  # inference: the pre-activations live in a scratch chunk, not the workspace
        output, _ = fast(x, hx)
    torch.testing.assert_close(output, expected["output"],
                               **tolerances(dtype, expected["output"]))


@pytest.mark.parametrize("mode", MODES)
def test_unbatched_input_matches_torch(mode, generator):
    reference, fast = make_pair(mode, INPUT, HIDDEN, 2, dtype=torch.float64)
    x = randn(generator, STEPS, INPUT, dtype=torch.float64)
    n_states = 2 if mode == "LSTM" else 1
    states = tuple(randn(generator, 2, HIDDEN, dtype=torch.float64) for _ in range(n_states))
    hx = states if mode == "LSTM" else states[0]
    grad_output = randn(generator, STEPS, HIDDEN, dtype=torch.float64)
    grad_state = [randn(generator, 2, HIDDEN, dtype=torch.float64) for _ in range(n_states)]
    expected = run_with_grads(reference, x, hx, grad_output, grad_state)
    actual = run_with_grads(fast, x, hx, grad_output, grad_state)
    assert_results_close(actual, expected, torch.float64)


@pytest.mark.parametrize("mode", MODES)
def test_inference_without_grad_matches_torch(mode, generator):
    """Under no_grad the LSTM and GRU ops run with train=False and save no workspace."""
    reference, fast = make_pair(mode, INPUT, HIDDEN, 2, bidirectional=True)
    x = randn(generator, STEPS, BATCH, INPUT)
    with torch.no_grad():
        expected_output, expected_state = reference(x)
        output, state = fast(x)
    torch.testing.assert_close(output, expected_output, rtol=1e-5, atol=1e-5)
    for a, b in zip(flatten(state), flatten(expected_state)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def flatten(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("mode", MODES)
def test_dropout_matches_torch(mode, generator):
    """Inter-layer dropout in training mode draws from torch's RNG exactly as torch.nn."""
    reference, fast = make_pair(mode, INPUT, HIDDEN, 3, dropout=0.5, dtype=torch.float64)
    x = randn(generator, STEPS, BATCH, INPUT, dtype=torch.float64)
    grad_output = randn(generator, STEPS, BATCH, HIDDEN, dtype=torch.float64)
    grad_state = [randn(generator, 3, BATCH, HIDDEN, dtype=torch.float64)
                  for _ in range(2 if mode == "LSTM" else 1)]
    torch.manual_seed(1234)
    expected = run_with_grads(reference, x, None, grad_output, grad_state)
    torch.manual_seed(1234)
    actual = run_with_grads(fast, x, None, grad_output, grad_state)
    assert_results_close(actual, expected, torch.float64)
    # Dropout really ran: a different seed gives a different output, and eval mode none at all.
    torch.manual_seed(4321)
    other = run_with_grads(fast, x, None, grad_output, grad_state)
    assert not torch.allclose(other["output"], actual["output"])
    reference.eval()
    fast.eval()
    torch.testing.assert_close(fast(x)[0], reference(x)[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("lengths", [[3, 5, 1, 4], [40, 33, 25, 40, 7, 18, 1, 39]],
                         ids=["short", "input_in_steps"])
@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("mode", MODES)
def test_packed_sequence_matches_torch(mode, bidirectional, enforce_sorted, lengths, generator):
    """PackedSequence input runs the kernels in packed layout; hx is permuted by sorted_indices
    and h_n un-permuted, as torch.nn does. The long batch (8 rows x 40 steps) computes x W_ih^T
    in the step kernel while its rows drop from 8 to 1."""
    from torch.nn.utils.rnn import pack_padded_sequence

    dtype = torch.float64
    reference, fast = make_pair(mode, INPUT, HIDDEN, 2, bidirectional=bidirectional, dtype=dtype)
    lengths = torch.tensor(lengths)
    if enforce_sorted:
        lengths = lengths.sort(descending=True).values
    directions = 2 if bidirectional else 1
    batch = len(lengths)
    padded = randn(generator, int(lengths.max()), batch, INPUT, dtype=dtype)
    n_states = 2 if mode == "LSTM" else 1
    states = tuple(randn(generator, 2 * directions, batch, HIDDEN, dtype=dtype)
                   for _ in range(n_states))

    def run(module):
        x = padded.clone().requires_grad_()
        h = tuple(s.clone().requires_grad_() for s in states)
        packed = pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
        output, final = module(packed, h if mode == "LSTM" else h[0])
        finals = list(final) if mode == "LSTM" else [final]
        loss = (output.data * torch.arange(output.data.numel(), dtype=dtype).reshape(
            output.data.shape).sin()).sum() + sum((f * (i + 2)).sum() for i, f in enumerate(finals))
        grads = torch.autograd.grad(loss, [x, *h, *module.parameters()])
        return [output.data, output.batch_sizes, *finals, *grads]

    for actual, expected in zip(run(fast), run(reference)):
        torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("initial_state", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("kind", ["padded", "batch_first", "packed", "projection"])
@pytest.mark.parametrize("mode", MODES)
def test_double_backward_matches_torch(mode, kind, initial_state, generator):
    """A gradient penalty: the gradients of a loss on the input gradient (backward with
    create_graph=True, then backward again) equal torch.nn's, for the input, initial states and
    every parameter of a two-layer bidirectional stack."""
    from torch.nn.utils.rnn import pack_padded_sequence

    if kind == "projection" and mode != "LSTM":
        pytest.skip("proj_size is an LSTM option")
    dtype = torch.float64
    kwargs = {"proj_size": 3} if kind == "projection" else {}
    reference, fast = make_pair(mode, INPUT, HIDDEN, 2, bidirectional=True, dtype=dtype,
                                batch_first=kind == "batch_first", **kwargs)
    x = randn(generator, STEPS, BATCH, INPUT, dtype=dtype)
    lengths = torch.tensor([STEPS, STEPS - 2, 1])
    out = kwargs.get("proj_size", HIDDEN)
    states = [randn(generator, 4, BATCH, size, dtype=dtype)
              for size in ([out, HIDDEN] if mode == "LSTM" else [HIDDEN])] if initial_state else []

    def run(module):
        input = x.clone().requires_grad_()
        hx = [s.clone().requires_grad_() for s in states]
        data = input.transpose(0, 1) if kind == "batch_first" else input
        if kind == "packed":
            data = pack_padded_sequence(data, lengths)
        output, final = module(data, (tuple(hx) if mode == "LSTM" else hx[0]) if hx else None)
        output = output.data if kind == "packed" else output
        finals = list(final) if mode == "LSTM" else [final]
        loss = (output.sin()).sum() + sum((f * f).sum() for f in finals)
        wrt = [input, *hx, *module.parameters()]
        first = torch.autograd.grad(loss, wrt, create_graph=True)
        penalty = sum((g * g).sum() for g in first)
        return [*first, *torch.autograd.grad(penalty, wrt)]

    for actual, expected in zip(run(fast), run(reference)):
        torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("batch, steps", [(BATCH, STEPS), (6, 43)],
                         ids=["input_gemm", "input_in_steps"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_projection_matches_torch(num_layers, bidirectional, batch, steps, generator):
    """3 rows take the input projection from a GEMM; 6 rows in a call of 258 from the step
    kernel."""
    dtype = torch.float64
    reference, fast = make_pair("LSTM", INPUT, HIDDEN, num_layers, bidirectional=bidirectional,
                                proj_size=7, dtype=dtype)
    directions = 2 if bidirectional else 1
    x = randn(generator, steps, batch, INPUT, dtype=dtype)
    hx = (randn(generator, num_layers * directions, batch, 7, dtype=dtype),
          randn(generator, num_layers * directions, batch, HIDDEN, dtype=dtype))
    grad_output = randn(generator, steps, batch, 7 * directions, dtype=dtype)
    grad_state = [randn(generator, *h.shape, dtype=dtype) for h in hx]
    expected = run_with_grads(reference, x, hx, grad_output, grad_state)
    actual = run_with_grads(fast, x, hx, grad_output, grad_state)
    assert_results_close(actual, expected, dtype)


@pytest.mark.parametrize("batch", [BATCH, 1])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("mode", MODES)
def test_half_precision_within_twice_torch_error(mode, dtype, batch, generator):
    """float16/bfloat16 on the CPU: fastrnn keeps state and sums in float32, so its error against
    float64 must stay within DESIGN.md's bound of twice torch.nn's own error in that dtype
    (batch 1: bfloat16's one-row path, with its saved workspace, in training)."""
    from utils import assert_within_half_precision_rule

    reference, fast = make_pair(mode, INPUT, HIDDEN, 2, bidirectional=True)
    x = randn(generator, STEPS, batch, INPUT)
    grad_output = randn(generator, STEPS, batch, 2 * HIDDEN)
    grad_state = [randn(generator, 4, batch, HIDDEN) for _ in range(2 if mode == "LSTM" else 1)]
    # Round the weights and data to the half dtype first, so every run sees the same numbers.
    reference.to(dtype)
    fast.load_state_dict(reference.state_dict())
    x, grad_output = x.to(dtype), grad_output.to(dtype)
    grad_state = [g.to(dtype) for g in grad_state]
    exact = run_with_grads(copy.deepcopy(reference).double(), x.double(), None,
                           grad_output.double(), [g.double() for g in grad_state])
    theirs = run_with_grads(reference, x, None, grad_output, grad_state)
    ours = run_with_grads(fast.to(dtype), x, None, grad_output, grad_state)
    assert all(v.dtype == dtype for v in ours.values())
    assert_within_half_precision_rule(ours, theirs, exact)


BF16_SHAPES = [
    # (steps, batch, input, hidden, extra): odd hidden sizes pad the bfloat16 pairs; 300 x 4 rows
    # cross the driver's 1024-row chunks; packed and bidirectional start rows late in reverse.
    # Every shape but the last is past the bar for reading W_hh as stored (cpu_backend.h,
    # kNativeCallRows); the last, one packed step of 6 rows, reads it as stored and still takes
    # its input projection from the bfloat16 GEMM (the float32 input is never made for it).
    (20, 5, 6, 9, {}),
    (300, 4, 40, 33, {"bidirectional": True}),
    (17, 6, 5, 16, {"packed": True, "bidirectional": True}),
    (33, 3, 5, 11, {"proj_size": 4}),
    (1, 6, 5, 16, {"packed": True}),
]


@pytest.mark.skipif(not fastrnn._C.cpu_bf16_products(),
                    reason=f"bfloat16 products not in use: {bf16_products()}")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", BF16_SHAPES, ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_bf16_products_within_twice_torch_error(mode, shape, threads, generator):
    """bfloat16 calls of several rows run their recurrent products with AVX512_BF16 on h rounded
    to bfloat16 and their input projection as a bfloat16 GEMM: still within DESIGN.md's bound on
    every path through the driver, and so are the gradients, whose whole-sequence GEMMs run in
    bfloat16 too."""
    from torch.nn.utils.rnn import pack_padded_sequence

    from utils import assert_within_half_precision_rule

    steps, batch, input_size, hidden, extra = dict(enumerate(shape)).values()
    extra = dict(extra)
    packed = extra.pop("packed", False)
    if "proj_size" in extra and mode != "LSTM":
        pytest.skip("proj_size is an LSTM option")
    reference, fast = make_pair(mode, input_size, hidden, **extra)
    reference.to(torch.bfloat16)
    fast.load_state_dict(reference.state_dict())
    fast.to(torch.bfloat16)
    x = randn(generator, steps, batch, input_size, dtype=torch.bfloat16)
    lengths = torch.tensor(sorted(torch.randint(1, steps + 1, (batch,), generator=generator)
                                  .tolist(), reverse=True))
    lengths[0] = steps

    def run(module, dtype):
        data = x.to(dtype)
        data = pack_padded_sequence(data, lengths) if packed else data
        with torch.no_grad():
            output, state = module(data)
        output = output.data if packed else output
        states = state if isinstance(state, tuple) else (state,)
        return {"output": output, **{f"state_{i}": s for i, s in enumerate(states)}}

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        exact = run(copy.deepcopy(reference).double(), torch.float64)
        theirs = run(reference, torch.bfloat16)
        ours = run(fast, torch.bfloat16)
    finally:
        torch.set_num_threads(previous)
    assert all(v.dtype == torch.bfloat16 for v in ours.values())
    assert_within_half_precision_rule(ours, theirs, exact)
    if packed:
        return
    # Training: the same forward, and backward's whole-sequence GEMMs in bfloat16.
    outputs = (2 if extra.get("bidirectional") else 1) * extra.get("proj_size", hidden)
    grad_output = randn(generator, steps, batch, outputs, dtype=torch.bfloat16)
    directions = 2 if extra.get("bidirectional") else 1
    sizes = [extra.get("proj_size", hidden), hidden] if mode == "LSTM" else [hidden]
    grad_state = [randn(generator, directions, batch, size, dtype=torch.bfloat16) for size in sizes]
    torch.set_num_threads(threads)
    try:
        exact = run_with_grads(copy.deepcopy(reference).double(), x.double(), None,
                               grad_output.double(), [g.double() for g in grad_state])
        theirs = run_with_grads(reference, x, None, grad_output, grad_state)
        ours = run_with_grads(fast, x, None, grad_output, grad_state)
    finally:
        torch.set_num_threads(previous)
    assert_within_half_precision_rule(ours, theirs, exact)


@pytest.mark.parametrize("unbatched", [False, True], ids=["batch1", "unbatched"])
@pytest.mark.parametrize("steps", [1, 7])
@pytest.mark.parametrize("mode", MODES)
def test_bf16_single_row_reads_bf16_weights_exactly(mode, steps, unbatched, generator):
    """bfloat16 calls of one row read W_hh (and, for a single step, W_ih) in bfloat16, widened
    as they are read (a bfloat16 WeightOperand): bitwise what float32 gives on the widened
    values, rounded to bfloat16 once at the end of the layer."""
    input_size, hidden = 21, 37
    _, fast16 = make_pair(mode, input_size, hidden, 1, bidirectional=True)
    fast16 = fast16.to(torch.bfloat16)
    _, fast32 = make_pair(mode, input_size, hidden, 1, bidirectional=True)
    fast32.load_state_dict({k: v.float() for k, v in fast16.state_dict().items()})
    batch = () if unbatched else (1,)
    x = randn(generator, steps, *batch, input_size, dtype=torch.bfloat16)
    n_states = 2 if mode == "LSTM" else 1
    states = tuple(randn(generator, 2, *batch, hidden, dtype=torch.bfloat16) for _ in range(n_states))
    hx16 = states if mode == "LSTM" else states[0]
    hx32 = tuple(s.float() for s in states) if mode == "LSTM" else states[0].float()
    with torch.no_grad():
        out16, final16 = fast16(x, hx16)
        out32, final32 = fast32(x.float(), hx32)
    assert out16.dtype == torch.bfloat16
    assert torch.equal(out16, out32.to(torch.bfloat16))
    for a, b in zip(flatten(final16), flatten(final32)):
        assert torch.equal(a, b.to(torch.bfloat16))
