"""Property-based parity with torch.nn: hypothesis draws random configurations (cell, sizes,
layers, directions, batch_first, bias, proj_size, padded or packed sorted/unsorted input, given
or default state) and fastrnn must match torch.nn's outputs, final states and every gradient."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from utils import MODES, make_pair

# CI reruns these under each lower FASTRNN_CPU_ISA (.ci/run).
pytestmark = pytest.mark.kernels


@st.composite
def configurations(draw):
    mode = draw(st.sampled_from(MODES))
    hidden = draw(st.integers(1, 24))
    config = dict(
        mode=mode,
        input_size=draw(st.integers(1, 12)),
        hidden=hidden,
        num_layers=draw(st.integers(1, 3)),
        bidirectional=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bias=draw(st.booleans()),
        proj=draw(st.integers(1, hidden - 1)) if mode == "LSTM" and hidden > 1 and draw(st.booleans()) else 0,
        steps=draw(st.integers(1, 7)),
        batch=draw(st.integers(1, 5)),
        layout=draw(st.sampled_from(["padded", "packed-sorted", "packed-unsorted"])),
        with_state=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )
    if config["layout"] != "padded":
        lengths = draw(st.lists(st.integers(1, config["steps"]), min_size=config["batch"],
                                max_size=config["batch"]))
        if config["layout"] == "packed-sorted":
            lengths = sorted(lengths, reverse=True)
        config["lengths"] = lengths
    return config


def _run(module, config, x, states, grad_seed):
    x = x.detach().clone().requires_grad_()
    states = [s.detach().clone().requires_grad_() for s in states] if states else None
    layout = config["layout"]
    if layout == "padded":
        input = x
    else:
        input = pack_padded_sequence(x, torch.tensor(config["lengths"]),
                                     batch_first=config["batch_first"],
                                     enforce_sorted=layout == "packed-sorted")
    hx = None if states is None else (tuple(states) if config["mode"] == "LSTM" else states[0])
    output, final = module(input, hx)
    output = output if layout == "padded" else output.data
    finals = list(final) if isinstance(final, tuple) else [final]
    g = torch.Generator().manual_seed(grad_seed)
    outs = [output, *finals]
    grads_out = [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in outs]
    leaves = [x, *(states or []), *module.parameters()]
    grads = torch.autograd.grad(outs, leaves, grads_out)
    return [o.detach() for o in outs] + list(grads)


@settings(max_examples=200, deadline=None)
@given(configurations())
def test_random_configurations_match_torch(config):
    dtype = torch.float64
    kwargs = dict(bias=config["bias"], batch_first=config["batch_first"],
                  bidirectional=config["bidirectional"], dtype=dtype)
    if config["proj"]:
        kwargs["proj_size"] = config["proj"]
    reference, fast = make_pair(config["mode"], config["input_size"], config["hidden"],
                                config["num_layers"], **kwargs)
    g = torch.Generator().manual_seed(config["seed"])
    T, B = config["steps"], config["batch"]
    x = torch.randn((B, T, config["input_size"]) if config["batch_first"] else (T, B, config["input_size"]),
                    generator=g, dtype=dtype)
    layers = config["num_layers"] * (2 if config["bidirectional"] else 1)
    out_size = config["proj"] or config["hidden"]
    states = None
    if config["with_state"]:
        states = [torch.randn(layers, B, out_size, generator=g, dtype=dtype)]
        if config["mode"] == "LSTM":
            states.append(torch.randn(layers, B, config["hidden"], generator=g, dtype=dtype))
    expected = _run(reference, config, x, states, config["seed"] + 1)
    actual = _run(fast, config, x, states, config["seed"] + 1)
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


# ---- fuzzing: random shapes, dtypes, strides and states, valid or not ----
# Every module and cell, and every op, is fed random (often invalid) calls. The only acceptable
# outcomes: torch.nn's result (NaN where torch has NaN), or a clean Python exception of the type
# torch.nn raises for the same call (ops: a RuntimeError for a call known to be invalid).
# FASTRNN_RELIABILITY_FULL=1 (scripts/reliability.sh) runs 20x the examples.

FUZZ_EXAMPLES = 150 * (20 if os.environ.get("FASTRNN_RELIABILITY_FULL") == "1" else 1)
FUZZ_MODULES = ["RNN_TANH", "RNN_RELU", "LSTM", "LSTM-proj", "GRU", "RNNCell-tanh",
                "RNNCell-relu", "LSTMCell", "GRUCell"]
LAYOUTS = ["contiguous", "transposed", "every-other", "expanded"]


def _laid_out(tensor: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as `tensor` in a given memory layout (views, not copies)."""
    if layout == "transposed" and tensor.dim() >= 2:
        return tensor.transpose(0, 1).contiguous().transpose(0, 1)
    if layout == "every-other":
        wide = torch.full((*tensor.shape[:-1], 2 * tensor.shape[-1]), float("nan"), dtype=tensor.dtype)
        wide[..., ::2] = tensor
        return wide[..., ::2]
    if layout == "expanded" and tensor.dim() >= 2 and tensor.shape[0] > 0:
        return tensor[:1].expand(tensor.shape)  # every row the same: a stride-0 dimension
    return tensor


def _make_fuzzed_module(kind, config, dtype):
    if kind.endswith("Cell") or "Cell-" in kind:
        name = kind.split("-")[0]
        extra = {"nonlinearity": kind.split("-")[1]} if name == "RNNCell" else {}
        reference = getattr(nn, name)(config["input_size"], config["hidden"], bias=config["bias"],
                                      dtype=dtype, **extra)
        fast = getattr(fastrnn, name)(config["input_size"], config["hidden"], bias=config["bias"],
                                      dtype=dtype, **extra)
        fast.load_state_dict(reference.state_dict())
    else:
        kwargs = dict(bias=config["bias"], batch_first=config["batch_first"],
                      bidirectional=config["bidirectional"], dtype=dtype)
        if kind == "LSTM-proj":
            kwargs["proj_size"] = config["proj"]
        reference, fast = make_pair(kind.split("-")[0], config["input_size"], config["hidden"],
                                    config["num_layers"], **kwargs)
    for name, weight in list(fast.named_parameters()):  # some weights as strided views
        if config["weight_layout"] != "contiguous" and weight.dim() == 2:
            setattr(fast, name, nn.Parameter(_laid_out(weight.detach(), config["weight_layout"])
                                             if config["weight_layout"] != "expanded" else weight.detach()))
    return reference, fast


@st.composite
def fuzzed_module_calls(draw):
    hidden = draw(st.integers(2, 8))
    return dict(
        kind=draw(st.sampled_from(FUZZ_MODULES)),
        dtype=draw(st.sampled_from([torch.float32, torch.float64])),
        input_dtype=draw(st.sampled_from(["same"] * 7 + ["other"])),
        input_size=draw(st.integers(1, 6)), hidden=hidden, proj=draw(st.integers(1, hidden - 1)),
        num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
        batch_first=draw(st.booleans()), bias=draw(st.booleans()),
        steps=draw(st.sampled_from([0, 1, 1, 2, 3, 5])), batch=draw(st.sampled_from([0, 1, 2, 3])),
        batched=draw(st.booleans()), wrong_input_size=draw(st.sampled_from([False] * 5 + [True])),
        layout=draw(st.sampled_from(LAYOUTS)), weight_layout=draw(st.sampled_from(LAYOUTS)),
        state=draw(st.sampled_from(["none"] * 3 + ["given"] * 6 + ["wrong-batch", "wrong-size",
                                                                   "wrong-rank", "other-dtype"])),
        state_layout=draw(st.sampled_from(LAYOUTS)),
        nan=draw(st.sampled_from([False, False, False, True])),
        grad=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))


def _fuzzed_inputs(config):
    """Input and state for a fuzzed call, from the config's seed."""
    g = torch.Generator().manual_seed(config["seed"])
    kind, dtype = config["kind"], config["dtype"]
    cell = "Cell" in kind
    features = config["input_size"] + (1 if config["wrong_input_size"] else 0)
    batch, steps = config["batch"], config["steps"]
    if cell:
        shape = (batch, features) if config["batched"] else (features,)
    elif config["batched"]:
        shape = (batch, steps, features) if config["batch_first"] else (steps, batch, features)
    else:
        shape = (steps, features)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if config["nan"] and x.numel():
        x.view(-1)[torch.randint(x.numel(), (1,), generator=g)] = float("nan")
    x = _laid_out(x.to(dtype if config["input_dtype"] == "same" else
                       {torch.float32: torch.float64, torch.float64: torch.float32}[dtype]),
                  config["layout"])
    if config["state"] == "none":
        return x, None
    lstm = kind.startswith("LSTM")
    directions = 1 if cell else (2 if config["bidirectional"] else 1)
    layers = 1 if cell else config["num_layers"] * directions
    out = config["proj"] if kind == "LSTM-proj" else config["hidden"]
    sizes = [out, config["hidden"]] if lstm else [out]
    states = []
    for size in sizes:
        b = batch + (1 if config["state"] == "wrong-batch" else 0)
        size = size + (1 if config["state"] == "wrong-size" else 0)
        if cell:
            shape = (b, size) if config["batched"] else (size,)
        else:
            shape = (layers, b, size) if config["batched"] else (layers, size)
        if config["state"] == "wrong-rank":
            shape = shape[1:] if len(shape) > 1 else (1, *shape)
        state = torch.randn(shape, generator=g, dtype=torch.float64)
        state_dtype = torch.bfloat16 if config["state"] == "other-dtype" else dtype
        states.append(_laid_out(state.to(state_dtype), config["state_layout"]))
    return x, tuple(states) if lstm else states[0]


def _call(module, x, hx, grad):
    """Results of module(x, hx), with the gradients of a fixed function of them if grad."""
    x = x.detach().clone().requires_grad_(grad) if grad else x
    with torch.set_grad_enabled(grad):
        result = module(x) if hx is None else module(x, hx)
    flat = _flatten(result)
    if not grad:
        return flat
    total = sum((t.double() * (i + 1)).sum() for i, t in enumerate(flat))
    leaves = [x, *module.parameters()]
    return flat + list(torch.autograd.grad(total, leaves, allow_unused=True))


def _flatten(result):
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for item in result for t in _flatten(item)]


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(fuzzed_module_calls())
def test_fuzzed_module_calls_match_torch_or_raise_like_it(config):
    reference, fast = _make_fuzzed_module(config["kind"], config, config["dtype"])
    x, hx = _fuzzed_inputs(config)
    expected = actual = None
    try:
        expected = _call(reference, x, hx, config["grad"])
    except Exception as error:  # noqa: BLE001 - torch.nn's verdict on this call
        expected = error
    try:
        actual = _call(fast, x, hx, config["grad"])
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        actual = error
    event("both raised" if isinstance(expected, Exception) else "both returned")  # statistics
    if isinstance(expected, Exception):
        assert isinstance(actual, Exception), f"torch raised {expected!r}; fastrnn returned"
        assert type(actual) is type(expected), f"torch: {expected!r}, fastrnn: {actual!r}"
        return
    assert not isinstance(actual, Exception), f"fastrnn raised {actual!r}; torch returned"
    tolerance = dict(rtol=1e-9, atol=1e-9) if config["dtype"] == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        if e is None or a is None:
            assert a is None and e is None or (a is not None and not a.abs().gt(0).any()) \
                or (e is not None and not e.abs().gt(0).any())
            continue
        torch.testing.assert_close(a, e, equal_nan=True, **tolerance)


# The ops: random valid arguments (test_ops.make_args) in random layouts, or with one argument
# broken; a valid call must match the pure-PyTorch reference (outputs and gradients), a broken one
# must raise a RuntimeError.
BREAKS = ["none", "none", "none", "dtype", "meta", "rank", "size", "batch_sizes"]


@st.composite
def fuzzed_op_calls(draw):
    cell = draw(st.sampled_from(["rnn_tanh", "rnn_relu", "lstm", "gru"]))
    hidden = draw(st.integers(2, 7))
    return dict(
        cell=cell, seed=draw(st.integers(0, 2**31 - 1)),
        config=dict(steps=draw(st.integers(1, 4)), batch=draw(st.integers(1, 3)),
                    input_size=draw(st.integers(1, 5)), hidden=hidden,
                    proj=draw(st.sampled_from([0, 0, hidden - 1])) if cell == "lstm" else 0,
                    bias=draw(st.booleans()), packed=draw(st.booleans()),
                    reverse=draw(st.booleans()),
                    dtype=draw(st.sampled_from([torch.float32, torch.float64]))),
        layouts=draw(st.lists(st.sampled_from(LAYOUTS[:3]), min_size=8, max_size=8)),
        broken=draw(st.sampled_from(BREAKS)), which=draw(st.integers(0, 7)))


def _break(args, broken, which):
    """Breaks one tensor argument of a valid call (the which-th, cyclically)."""
    names = [k for k, v in args.items() if isinstance(v, torch.Tensor) and k != "batch_sizes"]
    name = names[which % len(names)]
    t = args[name]
    if broken == "dtype":
        args[name] = t.to(torch.float32 if t.dtype == torch.float64 else torch.float64)
    elif broken == "meta":
        args[name] = t.to("meta")
    elif broken == "rank":
        args[name] = t.unsqueeze(0)
    elif broken == "size":
        args[name] = torch.cat([t, t[..., :1]], dim=-1)
    elif broken == "batch_sizes":
        if args["batch_sizes"] is None:
            args["batch_sizes"] = torch.tensor([1])  # padded input is 3-D: invalid as packed
        else:
            args["batch_sizes"] = args["batch_sizes"].flip(0) + 1


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(fuzzed_op_calls())
def test_fuzzed_op_calls_match_reference_or_raise(call):
    from test_ops import forward_op, make_args, reference

    cell, config = call["cell"], dict(call["config"])
    dtype = config.pop("dtype")
    generator = torch.Generator().manual_seed(call["seed"])
    args = make_args(cell, generator, dtype=dtype, **config)
    for (name, value), layout in zip(list(args.items()), call["layouts"]):
        if isinstance(value, torch.Tensor) and name != "batch_sizes":
            args[name] = _laid_out(value, layout)
    if call["broken"] != "none":
        _break(args, call["broken"], call["which"])
        event(f"broken {call['broken']}")
        with pytest.raises(RuntimeError):
            forward_op(cell)(*args.values())
        return
    event("valid")
    leaves = {k: v.detach().clone().requires_grad_() for k, v in args.items()
              if isinstance(v, torch.Tensor) and k != "batch_sizes"}
    args.update(leaves)
    results = 3 if cell == "lstm" else 2
    actual = forward_op(cell)(*args.values())[:results]
    expected = reference(cell, args)
    tolerance = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, **tolerance)
    grads_out = [torch.randn(e.shape, generator=generator, dtype=dtype) for e in expected]
    for a, e in zip(torch.autograd.grad(actual, list(leaves.values()), grads_out),
                    torch.autograd.grad(expected, list(leaves.values()), grads_out)):
        torch.testing.assert_close(a, e, **tolerance)
