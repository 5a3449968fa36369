"""The package is typed (PEP 561): ``py.typed`` ships, every public function and method of the
public API (modules, cells, functional, convert, info) annotates all of its parameters and its
return, and the extension's stub ``_C.pyi`` lists exactly what the extension defines."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import pytest
from torch import nn

import fastrnn
from fastrnn import _C, functional, info

PACKAGE = Path(fastrnn.__file__).parent
CLASSES = [fastrnn.RNNBase, fastrnn.RNN, fastrnn.LSTM, fastrnn.GRU, fastrnn.RNNCellBase,
           fastrnn.RNNCell, fastrnn.LSTMCell, fastrnn.GRUCell]
FUNCTIONS = [fastrnn.convert, fastrnn.to_torch, info.collect, info.main,
             *(getattr(functional, name) for name in functional.__all__)]


def _public_methods(cls: type) -> list:
    """The methods a class itself defines that users call: public names, plus __init__."""
    return [member for name, member in vars(cls).items()
            if inspect.isfunction(member) and (not name.startswith("_") or name == "__init__")]


def _unannotated(function) -> list[str]:
    signature = inspect.signature(function)
    missing = [name for name, parameter in signature.parameters.items()
               if name not in ("self", "cls") and parameter.annotation is inspect.Parameter.empty]
    if signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def test_py_typed_is_in_the_package_and_its_data():
    assert (PACKAGE / "py.typed").is_file()
    pyproject = (PACKAGE.parent / "pyproject.toml")
    if pyproject.is_file():  # a source tree: the wheel must carry the markers
        assert '"py.typed", "_C.pyi"' in pyproject.read_text()


def test_functional_exports_every_stack_function():
    assert set(functional.__all__) >= {"rnn_tanh", "rnn_relu", "lstm", "gru"}


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f"{f.__module__}.{f.__name__}")
def test_public_functions_are_annotated(function):
    assert _unannotated(function) == []


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_public_methods_are_annotated(cls):
    methods = _public_methods(cls)
    assert methods, cls
    missing = {method.__name__: _unannotated(method) for method in methods}
    assert {name: gaps for name, gaps in missing.items() if gaps} == {}


@pytest.mark.parametrize("cls", [fastrnn.RNN, fastrnn.LSTM, fastrnn.GRU], ids=lambda c: c.__name__)
def test_module_constructors_have_torch_signatures_for_type_checkers(cls):
    """The modules take *args (so bad arguments raise torch.nn's errors), with torch.nn's two
    @overloads: its full signature, parameter names and defaults, every parameter annotated,
    then fastrnn's keyword-only regularizers (off by default)."""
    ours = [inspect.signature(f) for f in typing.get_overloads(cls.__init__)]
    torchs = [inspect.signature(f) for f in typing.get_overloads(getattr(nn, cls.__name__).__init__)]
    assert len(ours) == len(torchs) == 2
    extras = [("weight_dropout", 0.0), ("variational_dropout", 0.0)]
    assert [(p.name, p.default) for p in ours[0].parameters.values()] == \
        [(p.name, p.default) for p in torchs[0].parameters.values()] + extras
    assert all(ours[0].parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
               for name, _ in extras)
    assert _unannotated(typing.get_overloads(cls.__init__)[0]) == []
    assert list(ours[1].parameters) == ["self", "args", "kwargs"]


def test_extension_stub_matches_the_extension():
    stub = ast.parse((PACKAGE / "_C.pyi").read_text())
    stubbed = {node.name for node in stub.body if isinstance(node, ast.FunctionDef)}
    defined = {name for name in dir(_C) if not name.startswith("_")}
    assert stubbed == defined
