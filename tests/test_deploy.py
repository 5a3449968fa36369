"""Shipping a model that holds fastrnn's modules: whole-model checkpoints under torch.load's
default weights_only=True, torch.jit.trace (the traced graph calls fastrnn's ops, saves, and
loads in a fresh process), and ONNX export with both exporters to ONNX's own LSTM, GRU and RNN
operators, run by onnxruntime. Saved checkpoints and traces are loaded in a new Python process,
as a server would, and their outputs compared with the model that made them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import fastrnn

from utils import FASTRNN_PARENT, randn


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
    # the model module, then the fastrnn this process runs (installed, or built in place)
    path = [str(tmp_path), FASTRNN_PARENT, os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
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
        "model": (lambda: _Encoder(), lambda b, t: (randn(generator, t, b, 6),)),
    }
    module, inputs = modules[name]
    return module(), inputs


class _Encoder(torch.nn.Module):
    """A model holding fastrnn modules and a cell among torch.nn layers."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(6, 6)
        self.gru = fastrnn.GRU(6, 8, num_layers=2, bidirectional=True)
        self.cell = fastrnn.LSTMCell(16, 4)

    def forward(self, x):
        y, h = self.gru(torch.relu(self.embed(x)))
        return self.cell(y[-1])[0], h


def _flat(result) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for item in result for t in _flat(item)]


def _trace(module, inputs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "`torch.jit.trace", DeprecationWarning)
        return torch.jit.trace(module, inputs)


TRACEABLE = ["LSTM", "LSTM-proj", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "model"]


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


@pytest.mark.parametrize("name", ["LSTM", "GRUCell", "in-a-model"])
def test_script_is_a_clear_error(name):
    """torch.jit.script cannot compile fastrnn's Python forward: a clear error that names what
    works (trace, export, compile), for a module, a cell, and a model holding one."""
    module = {"LSTM": lambda: fastrnn.LSTM(3, 4), "GRUCell": lambda: fastrnn.GRUCell(3, 4),
              "in-a-model": lambda: torch.nn.Sequential(torch.nn.Linear(3, 3),
                                                        fastrnn.RNN(3, 4))}[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(RuntimeError, match=r"cannot be compiled by torch.jit.script\. "
                                               r"torch.jit.trace it instead"):
            torch.jit.script(module)


def test_import_loads_no_onnx_packages(tmp_path):
    """import fastrnn imports neither torch.onnx nor onnxscript (a second to import): the ONNX
    translations wait for an export."""
    out = _run(tmp_path, """
        import sys, fastrnn
        print("torch.onnx" in sys.modules, "onnxscript" in sys.modules)
    """)
    assert out.split() == ["False", "False"]


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


def _libpython() -> str | None:
    import sysconfig

    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    path = os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY"))
    return path if os.path.exists(path) else None


@pytest.mark.slow
def test_traced_module_runs_from_libtorch(tmp_path, generator):
    """A C++ program on LibTorch (tests/cpp/load_traced.cpp) loads fastrnn's extension (after
    libpython), then a model traced in Python, and gives Python's output (about 15 s to build)."""
    import shutil

    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        pytest.skip("needs a C++ compiler (g++) to build the LibTorch program")
    libpython = _libpython()
    if libpython is None:
        pytest.skip("this Python has no shared libpython to load into a C++ program")
    torch_dir = os.path.dirname(torch.__file__)
    program = tmp_path / "load_traced"
    source = os.path.join(os.path.dirname(__file__), "cpp", "load_traced.cpp")
    build = subprocess.run(
        [compiler, "-std=c++20", "-O1", source, f"-I{torch_dir}/include",
         f"-I{torch_dir}/include/torch/csrc/api/include", f"-L{torch_dir}/lib", "-ltorch",
         "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{torch_dir}/lib", "-ldl", "-o", str(program)],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    module = fastrnn.LSTM(4, 6, num_layers=2, batch_first=True).eval()
    _trace(module, (randn(generator, 3, 7, 4),)).save(str(tmp_path / "traced.pt"))
    x = randn(generator, 2, 5, 4)
    x.numpy().tofile(tmp_path / "x.bin")
    env = {**os.environ, "LD_LIBRARY_PATH": f"{torch_dir}/lib{os.pathsep}"
                                            f"{os.environ.get('LD_LIBRARY_PATH', '')}"}
    run = subprocess.run([str(program), libpython, fastrnn._C.__file__, str(tmp_path / "traced.pt"),
                          str(tmp_path / "x.bin"), str(tmp_path / "y.bin")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["[2,", "5,", "6]"]
    import numpy

    actual = torch.from_numpy(numpy.fromfile(tmp_path / "y.bin", dtype=numpy.float32))
    with torch.no_grad():
        expected = module(x)[0].reshape(-1)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


# ---- ONNX ----

ONNX_CASES = {
    # name: (module factory, input factory (batch, steps), kwargs that make it)
    "LSTM-L2-bi": (lambda: fastrnn.LSTM(6, 8, num_layers=2, bidirectional=True),
                   lambda g, b, t: (randn(g, t, b, 6),)),
    "LSTM-batch_first-states": (lambda: fastrnn.LSTM(6, 8, batch_first=True),
                                lambda g, b, t: (randn(g, b, t, 6), (randn(g, 1, b, 8),
                                                                     randn(g, 1, b, 8)))),
    "GRU-bi-states": (lambda: fastrnn.GRU(6, 8, bidirectional=True),
                      lambda g, b, t: (randn(g, t, b, 6), randn(g, 2, b, 8))),
    "GRU-L2-no_bias": (lambda: fastrnn.GRU(6, 8, num_layers=2, bias=False),
                       lambda g, b, t: (randn(g, t, b, 6),)),
    "RNN-tanh-L2": (lambda: fastrnn.RNN(6, 8, num_layers=2),
                    lambda g, b, t: (randn(g, t, b, 6),)),
    "RNN-relu-bi-batch_first": (lambda: fastrnn.RNN(6, 8, nonlinearity="relu",
                                                    bidirectional=True, batch_first=True),
                                lambda g, b, t: (randn(g, b, t, 6),)),
    "LSTMCell": (lambda: fastrnn.LSTMCell(6, 8),
                 lambda g, b, t: (randn(g, b, 6), (randn(g, b, 8), randn(g, b, 8)))),
    "GRUCell": (lambda: fastrnn.GRUCell(6, 8), lambda g, b, t: (randn(g, b, 6),)),
    "RNNCell-relu": (lambda: fastrnn.RNNCell(6, 8, nonlinearity="relu"),
                     lambda g, b, t: (randn(g, b, 6), randn(g, b, 8))),
}
# ONNX's own recurrent operators; anything else a layer decomposed into would show here.
ONNX_RNN_OPS = {"LSTM", "GRU", "RNN"}
LAYOUT_OPS = {"Concat", "Constant", "Gather", "Squeeze", "Unsqueeze", "Transpose", "Identity"}


def _export(module, inputs, exporter: str, path, batch_first: bool, cell: bool) -> None:
    """torch.onnx.export of module with its batch (and, for layers, sequence) axes dynamic."""
    import torch.onnx

    flat = _flat(inputs)
    names = [f"input{i}" for i in range(len(flat))]
    if exporter == "torchscript":
        axes = {}
        for i, tensor in enumerate(flat):
            if cell:
                axes[names[i]] = {0: "batch"}
            elif i == 0:
                axes[names[i]] = {0: "batch", 1: "steps"} if batch_first else {0: "steps", 1: "batch"}
            else:
                axes[names[i]] = {1: "batch"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, inputs, str(path), dynamo=False, input_names=names,
                              dynamic_axes=axes)
        return
    batch, steps = torch.export.Dim("batch", min=2), torch.export.Dim("steps", min=2)

    def dims(value, first):
        if isinstance(value, tuple):
            return tuple(dims(v, False) for v in value)
        if cell:
            return {0: batch}
        if first:
            return {0: batch, 1: steps} if batch_first else {0: steps, 1: batch}
        return {1: batch}

    shapes = tuple(dims(value, i == 0) for i, value in enumerate(inputs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, inputs, dynamo=True, dynamic_shapes=shapes,
                                    verbose=False)
    program.save(str(path))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", list(ONNX_CASES))
def test_onnx_export_runs_in_onnxruntime(name, exporter, tmp_path, generator):
    """Both exporters turn fastrnn's modules and cells into ONNX's standard LSTM, GRU and RNN
    operators (nothing decomposed, no custom domain), and onnxruntime gives fastrnn's outputs,
    also at another batch size and sequence length than the export's (dynamic axes)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    make_module, make_inputs = ONNX_CASES[name]
    module = make_module().eval()
    cell = "Cell" in name
    batch_first = "batch_first" in name
    path = tmp_path / "model.onnx"
    _export(module, make_inputs(generator, 3, 5), exporter, path, batch_first, cell)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert ops & ONNX_RNN_OPS and ops <= ONNX_RNN_OPS | LAYOUT_OPS, ops
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, steps in ((3, 5), (4, 9)):
        inputs = make_inputs(generator, batch, steps)
        feed = {arg.name: tensor.numpy() for arg, tensor in
                zip(session.get_inputs(), _flat(inputs))}
        with torch.no_grad():
            expected = _flat(module(*inputs))
        actual = session.run(None, feed)
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            torch.testing.assert_close(torch.from_numpy(a), e, rtol=1e-5, atol=1e-5)


class _PackedModel(torch.nn.Module):
    """pack_padded_sequence inside the model, as torch.nn users export packed input."""

    def __init__(self, layer, enforce_sorted: bool):
        super().__init__()
        self.layer = layer
        self.enforce_sorted = enforce_sorted

    def forward(self, x, lengths):
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        output, final = self.layer(pack_padded_sequence(x, lengths,
                                                        enforce_sorted=self.enforce_sorted))
        return pad_packed_sequence(output)[0], final


@pytest.mark.parametrize("name", ["LSTM-L2-sorted", "GRU-unsorted", "RNN-sorted"])
def test_onnx_export_of_packed_input(name, tmp_path, generator):
    """As torch.nn's: a PackedSequence made by pack_padded_sequence inside the model exports with
    the TorchScript exporter (X and sequence_lens), and onnxruntime gives fastrnn's outputs for
    other lengths and batch sizes (sorted or not, as packed)."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    layer = {"LSTM-L2-sorted": lambda: fastrnn.LSTM(6, 8, num_layers=2),
             "GRU-unsorted": lambda: fastrnn.GRU(6, 8),
             "RNN-sorted": lambda: fastrnn.RNN(6, 8, nonlinearity="relu")}[name]()
    sorted_lengths = "unsorted" not in name
    model = _PackedModel(layer, sorted_lengths).eval()
    cases = [(randn(generator, 5, 3, 6), torch.tensor([5, 3, 2])),
             (randn(generator, 7, 4, 6), torch.tensor([7, 6, 3, 1]))]
    if not sorted_lengths:
        cases = [(x, lengths.flip(0)) for x, lengths in cases]
    path = tmp_path / "packed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, cases[0], str(path), dynamo=False,
                          input_names=["x", "lengths"],
                          dynamic_axes={"x": {0: "steps", 1: "batch"}, "lengths": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x, lengths in cases:
        actual = session.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            expected = _flat(model(x, lengths))
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            torch.testing.assert_close(torch.from_numpy(a), e, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("what", ["proj_size", "packed-bidirectional"])
def test_onnx_export_of_what_onnx_lacks_is_a_clear_error(what, exporter, tmp_path, generator):
    """ONNX's LSTM has no projection, and torch's passes that drop the packing of a packed
    sequence take one node per layer: fastrnn says so, naming the way out, instead of writing a
    model that computes something else."""
    pytest.importorskip("onnx")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    x = randn(generator, 5, 3, 6)
    if what == "proj_size":
        module, inputs, ours = fastrnn.LSTM(6, 8, proj_size=3), (x,), "an LSTM with proj_size"
    else:
        module = _PackedModel(fastrnn.GRU(6, 8, bidirectional=True), enforce_sorted=True)
        inputs, ours = (x, torch.tensor([5, 3, 2])), "a bidirectional layer on a PackedSequence"
    with pytest.raises(Exception) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                torch.onnx.export(module.eval(), inputs, str(tmp_path / "m.onnx"), dynamo=False)
            else:
                torch.onnx.export(module.eval(), inputs, dynamo=True, verbose=False)
    messages = []
    error = info.value
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    if what != "proj_size" and exporter == "dynamo":
        # torch's dynamo exporter stops earlier (torch.export on the data-dependent packing, or
        # no translation of pack_padded_sequence), as it does for torch.nn's modules
        assert any("pack_padded_sequence" in m or "data-dependent" in m for m in messages), \
            messages[0]
    else:
        assert any(f"fastrnn: {ours}" in m for m in messages), messages[0][:2000]


@pytest.mark.parametrize("name", ["LSTM", "GRU", "LSTMCell", "GRUCell", "RNNCell"])
def test_dynamic_quantization_warns_and_to_torch_quantizes(name, generator):
    """torch.ao.quantization.quantize_dynamic swaps only torch.nn's classes: on a model holding a
    fastrnn module it warns that the module stays float and names fastrnn.to_torch, and after
    to_torch the model quantizes exactly as the torch.nn model it came from."""
    torch_cls = getattr(torch.nn, name)
    reference = torch.nn.Sequential(torch.nn.Linear(4, 4), torch_cls(4, 5))
    model = fastrnn.convert(torch.nn.Sequential(torch.nn.Linear(4, 4), torch_cls(4, 5)))
    model.load_state_dict(reference.state_dict())
    spec = {torch.nn.Linear, torch_cls}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        still_float = torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)
    assert type(still_float[1]) is getattr(fastrnn, name)
    messages = [str(w.message) for w in caught]
    assert any(f"does not quantize fastrnn.{name}" in m and "fastrnn.to_torch(model)" in m
               for m in messages), messages
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        quantized = torch.ao.quantization.quantize_dynamic(fastrnn.to_torch(model), spec,
                                                           dtype=torch.qint8)
        expected = torch.ao.quantization.quantize_dynamic(reference, spec, dtype=torch.qint8)
    assert type(quantized[1]) is type(expected[1]) is not torch_cls  # a quantized module
    x = randn(generator, 3, 4) if "Cell" in name else randn(generator, 6, 3, 4)
    for a, e in zip(_flat(quantized(x)), _flat(expected(x))):
        torch.testing.assert_close(a, e, rtol=0, atol=0)
