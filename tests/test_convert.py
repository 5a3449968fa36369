"""fastrnn.convert and fastrnn.to_torch: every recurrent module of a model swapped in place, same
Parameter objects, device, dtype, training mode, hooks and parametrizations; same results."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import fastrnn

from utils import randn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
        self.lstm = nn.LSTM(6, 8, num_layers=2, bidirectional=True, proj_size=3, dropout=0.3)
        self.blocks = nn.ModuleList([nn.GRU(6, 5, batch_first=True), nn.RNN(6, 5, 1, "relu")])
        self.cells = nn.ModuleDict({"rnn": nn.RNNCell(6, 5, nonlinearity="relu"),
                                    "lstm": nn.LSTMCell(6, 5, bias=False), "gru": nn.GRUCell(6, 5)})

    def forward(self, x):  # x: [T, B, 4]
        e = self.encoder(x)
        y, (h, c) = self.lstm(e)
        g, _ = self.blocks[0](e.transpose(0, 1))
        r, _ = self.blocks[1](e)
        cell_h = self.cells["rnn"](e[0])
        lh, lc = self.cells["lstm"](e[0])
        gh = self.cells["gru"](e[0], cell_h)
        return sum(t.sum() * (i + 1) for i, t in enumerate([y, h, c, g, r, cell_h, lh, lc, gh]))


KINDS = {nn.LSTM: fastrnn.LSTM, nn.GRU: fastrnn.GRU, nn.RNN: fastrnn.RNN,
         nn.RNNCell: fastrnn.RNNCell, nn.LSTMCell: fastrnn.LSTMCell, nn.GRUCell: fastrnn.GRUCell}


def recurrent_types(model):
    return sorted(type(m).__name__ + type(m).__module__.split(".")[0] for m in model.modules()
                  if type(m) in KINDS or type(m) in KINDS.values())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("training", [True, False])
def test_convert_and_back_keeps_everything(dtype, training, generator):
    model = Model().to(dtype).train(training)
    x = randn(generator, 5, 3, 4, dtype=dtype)
    params_before = {name: p for name, p in model.named_parameters()}
    model.eval()  # compare without dropout
    expected = model(x)
    grads_expected = torch.autograd.grad(expected, list(model.parameters()))
    model.train(training)

    converted = fastrnn.convert(model)
    assert converted is model
    assert all(type(m) not in KINDS for m in model.modules())
    assert sum(type(m) in KINDS.values() for m in model.modules()) == 6
    assert {name: p for name, p in model.named_parameters()} == params_before  # same objects
    assert all(m.training == training for m in model.modules())
    assert all(p.dtype == dtype for p in model.parameters())
    model.eval()
    actual = model(x)
    grads = torch.autograd.grad(actual, list(model.parameters()))
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(actual, expected, **tol)
    for a, b in zip(grads, grads_expected):
        torch.testing.assert_close(a, b, **tol)

    back = fastrnn.to_torch(model)
    assert back is model and all(type(m) not in KINDS.values() for m in model.modules())
    assert {name: p for name, p in model.named_parameters()} == params_before
    torch.testing.assert_close(model(x), expected, **tol)


def test_convert_a_bare_module_returns_its_twin():
    lstm = nn.LSTM(3, 4, 2)
    twin = fastrnn.convert(lstm)
    assert type(twin) is fastrnn.LSTM and twin.weight_ih_l1 is lstm.weight_ih_l1
    assert type(fastrnn.to_torch(twin)) is nn.LSTM


def test_optimizer_created_before_convert_still_trains_the_model(generator):
    model = nn.Sequential(nn.GRU(3, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    fastrnn.convert(model)
    before = model[0].weight_hh_l0.detach().clone()
    model[0](randn(generator, 5, 2, 3))[0].sum().backward()
    optimizer.step()
    assert not torch.equal(model[0].weight_hh_l0, before)


def test_subclasses_are_left_alone():
    class MyLSTM(nn.LSTM):
        pass

    model = nn.Sequential(MyLSTM(3, 4))
    fastrnn.convert(model)
    assert type(model[0]) is MyLSTM


def test_hooks_and_parametrizations_carry_over(generator):
    class Scale(nn.Module):
        def forward(self, weight):
            return weight * 0.5

    calls = []
    lstm = nn.LSTM(3, 4)
    lstm.register_forward_hook(lambda module, args, output: calls.append(type(module).__name__))
    parametrize.register_parametrization(lstm, "weight_hh_l0", Scale())
    original = lstm.parametrizations.weight_hh_l0.original
    x = randn(generator, 5, 2, 3)
    expected = lstm(x)[0]
    twin = fastrnn.convert(lstm)
    assert parametrize.is_parametrized(twin, "weight_hh_l0")
    assert twin.parametrizations.weight_hh_l0.original is original
    torch.testing.assert_close(twin(x)[0], expected, rtol=1e-5, atol=1e-5)
    assert type(twin).__bases__[0] is fastrnn.LSTM
    assert len(calls) == 2  # the hook ran on the original and again on the twin


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_module_survives_deepcopy_pickle_and_dtype_moves(name, generator):
    import copy

    module = getattr(fastrnn, name)(3, 4, num_layers=2, bidirectional=True)
    x = randn(generator, 5, 2, 3)
    expected = module(x)[0]
    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert type(clone) is type(module)
        torch.testing.assert_close(clone(x)[0], expected, rtol=0, atol=0)
    double = copy.deepcopy(module).double()
    assert all(p.dtype == torch.float64 for p in double._flat_weights)
    torch.testing.assert_close(double(x.double())[0].float(), expected, rtol=1e-5, atol=1e-5)
    back = double.to(torch.float32)
    torch.testing.assert_close(back(x)[0], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_functional_call_uses_the_given_parameters(name, generator):
    module = getattr(fastrnn, name)(3, 4)
    other = getattr(fastrnn, name)(3, 4)
    x = randn(generator, 5, 2, 3)
    swapped = torch.func.functional_call(module, dict(other.named_parameters()), (x,))
    torch.testing.assert_close(swapped[0], other(x)[0], rtol=0, atol=0)
    assert not torch.allclose(module(x)[0], other(x)[0])


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_parametrized_weights_match_torch(name, generator):
    class Symmetric(nn.Module):
        def forward(self, weight):
            return weight.triu() + weight.triu(1).transpose(0, 1)

    reference = getattr(nn, name)(4, 4)
    fast = getattr(fastrnn, name)(4, 4)
    fast.load_state_dict(reference.state_dict())
    for m in (reference, fast):
        if name == "RNN":
            parametrize.register_parametrization(m, "weight_hh_l0", Symmetric())
        else:
            parametrize.register_parametrization(m, "weight_ih_l0", _FirstRowsZero())
    x = randn(generator, 5, 2, 4)
    out_ref, out_fast = reference(x)[0], fast(x)[0]
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-5, atol=1e-5)
    g_ref = torch.autograd.grad(out_ref.sum(), list(reference.parameters()))
    g_fast = torch.autograd.grad(out_fast.sum(), list(fast.parameters()))
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


class _FirstRowsZero(nn.Module):
    def forward(self, weight):
        return torch.cat([torch.zeros_like(weight[:2]), weight[2:]])
