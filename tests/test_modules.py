"""The torch.nn surface of fastrnn's modules: constructor signature, parameters, initialisation,
repr, state_dict in both directions, and the same exceptions with the same messages as torch.nn
for bad constructor arguments and bad forward input."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import fastrnn

from utils import MODES, assert_same_error, make_pair, randn

CLASSES = {"RNN": (nn.RNN, fastrnn.RNN), "LSTM": (nn.LSTM, fastrnn.LSTM), "GRU": (nn.GRU, fastrnn.GRU)}

CONSTRUCTIONS = [
    ((10, 20), {}),
    ((10, 20, 2), {"bias": False, "batch_first": True}),
    ((10, 20), {"num_layers": 3, "bidirectional": True, "dropout": 0.25}),
    ((7, 9, 2, True, False, 0.0, True), {}),
]


def _pairs():
    for name in CLASSES:
        for args, kwargs in CONSTRUCTIONS:
            if name == "RNN" and len(args) > 3:  # RNN's 4th positional is nonlinearity
                args = args[:3] + ("tanh",) + args[3:]
            yield pytest.param(name, args, kwargs, id=f"{name}-{args}-{sorted(kwargs.items())}")
    yield pytest.param("RNN", (10, 20, 2, "relu"), {}, id="RNN-positional-nonlinearity")
    yield pytest.param("RNN", (10, 20), {"nonlinearity": "relu", "bidirectional": True}, id="RNN-relu")
    yield pytest.param("LSTM", (10, 20), {"proj_size": 5, "num_layers": 2}, id="LSTM-proj")


@pytest.mark.parametrize("name,args,kwargs", list(_pairs()))
def test_parameters_initialisation_and_repr_match_torch(name, args, kwargs):
    torch_cls, fast_cls = CLASSES[name]
    torch.manual_seed(7)
    reference = torch_cls(*args, **kwargs)
    torch.manual_seed(7)
    fast = fast_cls(*args, **kwargs)
    assert repr(fast) == repr(reference)
    named_reference = list(reference.named_parameters())
    named_fast = list(fast.named_parameters())
    assert [n for n, _ in named_fast] == [n for n, _ in named_reference]
    for (_, a), (_, b) in zip(named_fast, named_reference):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert torch.equal(a, b)  # same RNG draws in the same order
    assert fast._flat_weights_names == reference._flat_weights_names
    assert fast._all_weights == reference._all_weights
    assert [[p.shape for p in ps] for ps in fast.all_weights] == \
           [[p.shape for p in ps] for ps in reference.all_weights]
    for attribute in ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
                      "dropout", "bidirectional", "proj_size"):
        assert getattr(fast, attribute) == getattr(reference, attribute), attribute
    if name == "RNN":
        assert fast.nonlinearity == reference.nonlinearity


@pytest.mark.parametrize("mode", MODES)
def test_state_dict_round_trip_both_directions(mode, generator):
    x = randn(generator, 4, 2, 5)
    reference, fast = make_pair(mode, 5, 8, 2, bidirectional=True)  # torch -> fastrnn
    torch.testing.assert_close(fast(x)[0], reference(x)[0], rtol=1e-5, atol=1e-5)

    fast2 = make_pair(mode, 5, 8, 2, bidirectional=True)[1]  # fresh weights
    with torch.no_grad():
        for p in fast2.parameters():
            p.copy_(randn(generator, *p.shape) * 0.3)
    reference2 = make_pair(mode, 5, 8, 2, bidirectional=True)[0]
    missing_unexpected = reference2.load_state_dict(fast2.state_dict())  # fastrnn -> torch
    assert not missing_unexpected.missing_keys and not missing_unexpected.unexpected_keys
    assert fast2.state_dict().keys() == reference2.state_dict().keys()
    torch.testing.assert_close(fast2(x)[0], reference2(x)[0], rtol=1e-5, atol=1e-5)


def test_flatten_parameters_is_a_noop():
    _, fast = make_pair("LSTM", 3, 4)
    before = [p.data_ptr() for p in fast.parameters()]
    fast.flatten_parameters()
    assert [p.data_ptr() for p in fast.parameters()] == before


BAD_CONSTRUCTORS = [
    ((10, 20), {"dropout": 1.5}),
    ((10, 20), {"dropout": True}),
    ((10, 20), {"dropout": "0.1"}),
    ((10, 20), {"bias": 1}),
    ((10, 20), {"batch_first": None}),
    ((10.0, 20), {}),
    ((0, 20), {}),
    ((10, "20"), {}),
    ((10, -1), {}),
    ((10, 20, 0), {}),
    ((10, 20), {"proj_size": -1}),
    ((10, 20), {"proj_size": 20}),
    ((10, 20), {"proj_size": 5}),  # only the LSTM takes it
]


@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("args,kwargs", BAD_CONSTRUCTORS, ids=[str(c) for c in BAD_CONSTRUCTORS])
def test_bad_constructor_arguments_raise_like_torch(name, args, kwargs):
    torch_cls, fast_cls = CLASSES[name]
    try:
        torch_cls(*args, **kwargs)
    except Exception as error:  # noqa: BLE001
        expected = error
    else:  # torch accepts it (proj_size for the LSTM): so must fastrnn
        fast_cls(*args, **kwargs)
        return
    with pytest.raises(type(expected)) as actual:
        fast_cls(*args, **kwargs)
    assert str(actual.value) == str(expected)


def test_bad_nonlinearity_raises_like_torch():
    assert_same_error(lambda: nn.RNN(3, 4, nonlinearity="gelu"),
                      lambda: fastrnn.RNN(3, 4, nonlinearity="gelu"))


@pytest.mark.parametrize("name", list(CLASSES))
def test_dropout_warning_matches_torch(name):
    torch_cls, fast_cls = CLASSES[name]
    with warnings.catch_warnings(record=True) as expected:
        warnings.simplefilter("always")
        torch_cls(3, 4, dropout=0.5)
    with warnings.catch_warnings(record=True) as actual:
        warnings.simplefilter("always")
        fast_cls(3, 4, dropout=0.5)
    assert [str(w.message) for w in actual] == [str(w.message) for w in expected]
    assert len(actual) == 1


def _bad_inputs(mode):
    """(description, input, hx) cases that torch.nn rejects; hx shapes for 2 layers, hidden 6."""
    lstm = mode == "LSTM"

    def state(*shape, dtype=torch.float32):
        h = torch.randn(*shape, dtype=dtype)
        return (h, torch.randn(*shape, dtype=dtype)) if lstm else h

    good = torch.randn(4, 3, 5)
    return [
        ("4-D input", torch.randn(4, 3, 5, 1), None),
        ("1-D input", torch.randn(5), None),
        ("wrong feature size", torch.randn(4, 3, 7), None),
        ("wrong feature size unbatched", torch.randn(4, 7), None),
        ("input dtype", good.double(), None),
        ("hx batch", good, state(2, 2, 6)),
        ("hx hidden", good, state(2, 3, 7)),
        ("hx layers", good, state(1, 3, 6)),
        ("hx rank batched", good, state(3, 6)),
        ("hx rank unbatched", torch.randn(4, 5), state(2, 1, 6)),
        ("zero-length sequence", torch.randn(0, 3, 5), None),
    ] + ([("cx only wrong", good, (torch.randn(2, 3, 6), torch.randn(2, 3, 4)))] if lstm else [])


@pytest.mark.parametrize("mode", MODES)
def test_bad_forward_input_raises_like_torch(mode):
    reference, fast = make_pair(mode, 5, 6, 2)
    for description, input, hx in _bad_inputs(mode):
        assert_same_error(lambda: reference(input, hx), lambda: fast(input, hx), description)


def test_modules_are_not_torch_rnn_subclasses():
    """torch.compile graph-breaks on isinstance(m, nn.RNNBase); fastrnn's modules must not be."""
    for _, fast_cls in CLASSES.values():
        assert issubclass(fast_cls, nn.Module) and not issubclass(fast_cls, nn.RNNBase)


@pytest.mark.parametrize("mode", MODES)
def test_packed_sequence_input_is_checked(mode):
    """torch.nn skips its input checks for a PackedSequence; fastrnn runs them (same messages as
    for padded input), and its ops reject a PackedSequence whose parts do not fit together."""
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

    _, fast = make_pair(mode, 5, 6, 2)
    lstm = mode == "LSTM"

    def state(batch, hidden):
        h = torch.randn(2, batch, hidden)
        return (h, torch.randn(2, batch, hidden)) if lstm else h

    packed = pack_padded_sequence(torch.randn(4, 3, 5), torch.tensor([4, 3, 1]))
    fast(packed, state(3, 6))  # well-formed: runs
    wrong_features = pack_padded_sequence(torch.randn(4, 3, 7), torch.tensor([4, 3, 1]))
    with pytest.raises(RuntimeError, match=r"input.size\(-1\) must be equal to input_size. "
                                           r"Expected 5, got 7"):
        fast(wrong_features)
    label = "hidden\\[0\\] size" if lstm else "hidden size"
    with pytest.raises(RuntimeError, match=rf"Expected {label} \(2, 3, 6\), got \[2, 2, 6\]"):
        fast(packed, state(2, 6))
    with pytest.raises(RuntimeError, match=rf"Expected {label} \(2, 3, 6\), got \[2, 3, 4\]"):
        fast(packed, state(3, 4))
    # Parts that do not fit: never read out of bounds, a clear error instead.
    too_few_rows = PackedSequence(packed.data[:-1], packed.batch_sizes)
    with pytest.raises(RuntimeError, match="batch_sizes sum to 8 but input has 7 rows"):
        fast(too_few_rows)
    increasing = PackedSequence(packed.data, torch.tensor([1, 3, 2, 2]))
    with pytest.raises(RuntimeError, match="non-increasing"):
        fast(increasing)
