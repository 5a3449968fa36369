"""Shipping a model that holds fastrnn's modules: whole-model checkpoints under torch.load's
default weights_only=True, and torch.jit.trace (the traced graph calls fastrnn's ops, saves, and
loads in a fresh process). Each saved artifact is loaded in a new Python process, as a server
would, and its outputs compared with the model that made it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import fastrnn

from utils import randn

# A model module of the user's, importable by the processes the tests start.
MODEL_SOURCE = textwrap.dedent('''
    import torch
    from torch import nn


    class Tagger(nn.Module):
        """Every recurrent class torch.nn has, as a user's model would hold them."""

        def __init__(self, nn_module=nn):
            super().__init__()
            self.lstm = nn_module.LSTM(6, 8, num_layers=2, batch_first=True, bidirectional=True)
            self.gru = nn_module.GRU(16, 8)
            self.rnn = nn_module.RNN(8, 8, nonlinearity="relu")
            self.lstm_cell = nn_module.LSTMCell(8, 5)
            self.gru_cell = nn_module.GRUCell(5, 5)
            self.rnn_cell = nn_module.RNNCell(5, 4)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            y, _ = self.lstm(x)
            y, _ = self.gru(y.transpose(0, 1))
            y, h = self.rnn(y)
            h, _ = self.lstm_cell(h[-1])
            h = self.gru_cell(h)
            return self.head(self.rnn_cell(h)), y
''')

# The classes torch.nn's version of the model needs allowlisted under weights_only=True.
ALLOWLIST = ("[model.Tagger, nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell, "
             "nn.Linear]")


def _run(tmp_path, code: str) -> str:
    """Runs code in a fresh Python process that can import the model module; returns stdout."""
    (tmp_path / "model.py").write_text(MODEL_SOURCE)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("kind", ["torch.nn", "fastrnn", "converted"])
def test_whole_model_checkpoint_loads_with_weights_only(kind, tmp_path):
    """torch.save(model) then torch.load with weights_only=True (torch's default) and the
    allowlist torch.nn's version of the model needs: the fastrnn version (built from fastrnn's
    classes, or by fastrnn.convert) loads under that same allowlist once fastrnn is imported."""
    make = {"torch.nn": "model.Tagger()", "fastrnn": "model.Tagger(fastrnn)",
            "converted": "fastrnn.convert(model.Tagger())"}[kind]
    _run(tmp_path, f"""
        import torch, fastrnn, model
        torch.manual_seed(0)
        tagger = {make}
        x = torch.randn(2, 7, 6)
        torch.save(tagger, "tagger.pt")
        torch.save((x, tagger(x)), "expected.pt")
    """)
    out = _run(tmp_path, f"""
        import torch, fastrnn, model
        from torch import nn
        with torch.serialization.safe_globals({ALLOWLIST}):
            tagger = torch.load("tagger.pt")  # weights_only=True: torch's default
        x, expected = torch.load("expected.pt")
        for a, b in zip(tagger(x), expected):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        print(type(tagger.lstm).__module__, type(tagger.rnn_cell).__module__,
              tagger.rnn.nonlinearity)
    """)
    module = "torch.nn.modules.rnn" if kind == "torch.nn" else "fastrnn.modules"
    cell_module = "torch.nn.modules.rnn" if kind == "torch.nn" else "fastrnn.cells"
    assert out.split() == [module, cell_module, "relu"]


def test_checkpoint_without_fastrnn_imported_names_the_class(tmp_path):
    """A process that never imported fastrnn gets torch's error naming the class to allowlist
    (the README says: import fastrnn before torch.load)."""
    _run(tmp_path, """
        import torch, fastrnn, model
        torch.save(model.Tagger(fastrnn), "tagger.pt")
    """)
    out = _run(tmp_path, f"""
        import pickle, torch, model
        from torch import nn
        try:
            with torch.serialization.safe_globals({ALLOWLIST}):
                torch.load("tagger.pt")
        except pickle.UnpicklingError as error:
            print("fastrnn.modules.LSTM" in str(error))
    """)
    assert out.split() == ["True"]


def _traceable(name: str, generator: torch.Generator):
    """A fastrnn module or cell, and a function giving its inputs for a batch and length."""
    modules = {
        "LSTM": (lambda: fastrnn.LSTM(6, 8, num_layers=2, batch_first=True),
                 lambda b, t: (randn(generator, b, t, 6),)),
        "LSTM-proj": (lambda: fastrnn.LSTM(6, 8, proj_size=3, bidirectional=True),
                      lambda b, t: (randn(generator, t, b, 6),)),
        "GRU": (lambda: fastrnn.GRU(6, 8, bidirectional=True),
                lambda b, t: (randn(generator, t, b, 6), randn(generator, 2, b, 8))),
        "RNN": (lambda: fastrnn.RNN(6, 8, nonlinearity="relu", bias=False),
                lambda b, t: (randn(generator, t, b, 6),)),
        "LSTMCell": (lambda: fastrnn.LSTMCell(6, 8), lambda b, t: (randn(generator, b, 6),)),
        "GRUCell": (lambda: fastrnn.GRUCell(6, 8),
                    lambda b, t: (randn(generator, b, 6), randn(generator, b, 8))),
        "RNNCell": (lambda: fastrnn.RNNCell(6, 8), lambda b, t: (randn(generator, b, 6),)),
    }
    module, inputs = modules[name]
    return module(), inputs


def _flat(result) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for item in result for t in _flat(item)]


def _trace(module, inputs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "`torch.jit.trace", DeprecationWarning)
        return torch.jit.trace(module, inputs)


TRACEABLE = ["LSTM", "LSTM-proj", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"]


@pytest.mark.parametrize("name", TRACEABLE)
def test_trace_calls_fastrnn_ops_and_matches(name, generator):
    """torch.jit.trace passes its sanity check (two traces agree), the graph runs fastrnn's
    registered ops, and the traced module gives the module's outputs and gradients, with and
    without grad, for another batch size and length than the example's."""
    module, inputs = _traceable(name, generator)
    traced = _trace(module, inputs(3, 5))
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert any(kind.startswith("fastrnn::") for kind in kinds), kinds
    assert not kinds & {"aten::lstm", "aten::gru", "aten::rnn_tanh", "aten::rnn_relu"}
    other = inputs(4, 7)
    with torch.no_grad():
        for a, b in zip(_flat(traced(*other)), _flat(module(*other))):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    grads = []
    for run in (traced, module):
        module.zero_grad()
        sum(t.sum() for t in _flat(run(*other))).backward()
        grads.append([p.grad.clone() for p in module.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("loader", ["import fastrnn", "load_library"])
def test_traced_module_saves_and_loads_in_a_fresh_process(loader, tmp_path, generator):
    """torch.jit.save of a traced LSTM; a new process loads it with torch.jit.load once
    fastrnn's ops are registered: by importing fastrnn, or by torch.ops.load_library on the
    extension alone (no fastrnn Python code runs)."""
    module, inputs = _traceable("LSTM", generator)
    _trace(module, inputs(3, 5)).save(str(tmp_path / "traced.pt"))
    x = inputs(2, 9)
    torch.save((x, module(*x)), tmp_path / "expected.pt")
    register = ("import fastrnn" if loader == "import fastrnn" else
                f"torch.ops.load_library({fastrnn._C.__file__!r})")
    out = _run(tmp_path, f"""
        import sys, torch
        {register}
        loaded = torch.jit.load("traced.pt")
        x, (output, (h, c)) = torch.load("expected.pt")
        actual, (actual_h, actual_c) = loaded(*x)
        for a, b in zip((actual, actual_h, actual_c), (output, h, c)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        print("fastrnn" in sys.modules)
    """)
    assert out.split() == [str(loader == "import fastrnn")]
