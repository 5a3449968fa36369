"""torch.compile(fullgraph=True) and torch.export of models with fastrnn modules: one graph, no
break, and the same forward and backward as eager, for padded and packed input, training and
eval."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn

from utils import randn


class Tagger(nn.Module):
    """A small sequence model: embedding projection, a 2-layer bidirectional RNN, a head."""

    def __init__(self, cell: str):
        super().__init__()
        self.project = nn.Linear(6, 8)
        self.rnn = getattr(fastrnn, cell)(8, 10, num_layers=2, bidirectional=True, dropout=0.2)
        self.head = nn.Linear(20, 3)

    def forward(self, x):
        if isinstance(x, torch.Tensor):
            x = self.project(x)
        else:  # a PackedSequence of raw features
            x = x._replace(data=self.project(x.data))
        y, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state
        y = y if isinstance(y, torch.Tensor) else y.data
        return self.head(y).logsumexp(-1).sum() + h.pow(2).sum()


def _inputs(kind: str, generator):
    x = randn(generator, 7, 4, 6)
    if kind == "padded":
        return x
    lengths = torch.tensor([7, 5, 5, 2]) if kind == "packed-sorted" else torch.tensor([5, 7, 2, 5])
    return pack_padded_sequence(x, lengths, enforce_sorted=kind == "packed-sorted")


def _run(model, x):
    loss = model(x)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return loss.detach(), grads


@pytest.mark.parametrize("kind", ["padded", "packed-sorted", "packed-unsorted"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_one_graph_no_break(cell, kind, generator):
    torch._dynamo.reset()
    model = Tagger(cell)
    explanation = torch._dynamo.explain(model)(_inputs(kind, generator))
    assert explanation.graph_count == 1
    assert explanation.graph_break_count == 0
    # The recurrence runs inside the graph, as fastrnn's ops.
    code = explanation.graphs[0].code
    assert f"fastrnn.{cell.lower()}" in code or "fastrnn.rnn_tanh" in code


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("kind", ["padded", "packed-unsorted"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_compiled_matches_eager(cell, kind, training, generator):
    torch._dynamo.reset()
    model = Tagger(cell).train(training)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = _inputs(kind, generator)
    torch.manual_seed(0)  # the same dropout masks in both runs
    expected_loss, expected_grads = _run(model, x)
    torch.manual_seed(0)
    loss, grads = _run(compiled, x)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["padded", "packed-sorted"])
def test_inductor_matches_eager(kind, generator):
    """The default backend (inductor), on an LSTM model: what users run."""
    torch._dynamo.reset()
    model = Tagger("LSTM").eval()
    compiled = torch.compile(model, fullgraph=True)
    x = _inputs(kind, generator)
    expected_loss, expected_grads = _run(model, x)
    loss, grads = _run(compiled, x)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-4, atol=1e-4)
    for a, b in zip(grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cell", ["LSTMCell", "GRUCell", "RNNCell"])
def test_compiled_cell_loop_matches_eager(cell, generator):
    torch._dynamo.reset()
    module = getattr(fastrnn, cell)(6, 8)

    def unroll(xs):
        state = None
        for x in xs:
            state = module(x, state)
        h = state[0] if isinstance(state, tuple) else state
        return h.sum()

    xs = randn(generator, 4, 3, 6)
    explanation = torch._dynamo.explain(unroll)(xs)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0
    compiled = torch.compile(unroll, fullgraph=True, backend="aot_eager")
    expected = torch.autograd.grad(unroll(xs), list(module.parameters()))
    actual = torch.autograd.grad(compiled(xs), list(module.parameters()))
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_export_inference_model(cell, generator):
    model = Tagger(cell).eval()
    x = randn(generator, 7, 4, 6)
    exported = torch.export.export(model, (x,))
    assert any("fastrnn" in str(node.target) for node in exported.graph.nodes)
    other = randn(generator, 7, 4, 6)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(other), model(other), rtol=1e-5, atol=1e-5)
