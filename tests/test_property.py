"""Property-based parity with torch.nn: hypothesis draws random configurations (cell, sizes,
layers, directions, batch_first, bias, proj_size, padded or packed sorted/unsorted input, given
or default state) and fastrnn must match torch.nn's outputs, final states and every gradient."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence

from utils import MODES, make_pair


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
