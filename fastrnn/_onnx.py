"""ONNX export of fastrnn's layer ops as ONNX's standard ``LSTM``, ``GRU`` and ``RNN`` operators,
for both exporters of ``torch.onnx.export``: the TorchScript one (``dynamo=False``, symbolic
functions) and the torch.export one (``dynamo=True``, the default, with onnxscript installed;
onnxscript functions in its torchlib registry, which the exporter reads after capturing the
model).

fastrnn imports neither ``torch.onnx`` nor onnxscript (a second to import) itself. The
TorchScript symbolics are registered when a fastrnn module or cell runs under an ONNX export
(``register_if_exporting``, on their regular path), before the exporter looks them up. The
dynamo exporter builds its registry from onnxscript's torchlib before it captures the model, so
fastrnn's onnxscript functions join torchlib's registry right after onnxscript imports its
torchlib ops (``install``: a one-shot import hook on that module), or at once if it already has.

One op call is one layer and direction, so a layer becomes one ONNX node (``direction`` forward
or reverse; a bidirectional layer two nodes and a Concat, as fastrnn computes it), with torch's
gate order rearranged to ONNX's (LSTM i f g o -> i o f c; GRU r z n -> z r h, with
``linear_before_reset=1``, which is torch's GRU). A ``PackedSequence`` that
``pack_padded_sequence`` makes inside the model exports with the TorchScript exporter as torch.nn's
does (the padded input and its lengths as X and sequence_lens; torch's passes drop the packing),
for unidirectional layers. What cannot be exported raises ``FastRNNOnnxError`` naming the way out:
other packed input (the dynamo exporter stops at ``pack_padded_sequence`` already), packed
bidirectional layers, and the LSTM's ``proj_size`` (ONNX's LSTM has no projection).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

import torch

# ONNX's gate order, as indices of torch's gate chunks.
_ONNX_GATES = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn_tanh": [0], "rnn_relu": [0]}
_ONNX_OP = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}
_OPSET = 14  # Squeeze, Unsqueeze and Split take their axes and sizes as inputs from opset 13

_registered = False
_TORCHLIB_OPS = "onnxscript.function_libs.torch_lib.ops"
_onnxscript_registered = False


def _onnx_rows(cell: str, hidden: int) -> list[int]:
    """The rows of a [gates * H, ...] weight (or [gates * H] bias) in ONNX's gate order: one
    Gather of constant indices, which the exporters fold into the stored weights."""
    return [gate * hidden + unit for gate in _ONNX_GATES[cell] for unit in range(hidden)]


class FastRNNOnnxError(RuntimeError):
    """A fastrnn module call that ONNX's RNN operators cannot express."""


def exporting() -> bool:
    """Whether a torch.onnx export is running (False, cheaply, when torch.onnx was never
    imported)."""
    onnx = sys.modules.get("torch.onnx")
    return onnx is not None and onnx.is_in_onnx_export()


def register_if_exporting() -> None:
    """Called by the modules and cells on their regular path: registers the translations when
    an ONNX export is capturing them."""
    if not _registered and exporting():
        register()


def register() -> None:
    """Registers the symbolics of fastrnn's forward ops with the TorchScript exporter (once)."""
    global _registered
    if _registered:
        return
    _registered = True
    from torch.onnx import register_custom_op_symbolic

    for cell in _ONNX_OP:
        register_custom_op_symbolic(f"fastrnn::{cell}_forward", _torchscript_symbolic(cell),
                                    _OPSET)


class _AfterTorchlibOps(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A one-shot import hook: loads onnxscript's torchlib ops module as the import system
    would, then adds fastrnn's functions to torchlib's registry."""

    def find_spec(self, name, path, target=None):
        if name != _TORCHLIB_OPS:
            return None
        sys.meta_path.remove(self)  # the real finders find it
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            self.loader = spec.loader
            spec.loader = self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        _register_onnxscript()


def install() -> None:
    """At import of fastrnn: fastrnn's onnxscript functions reach torchlib's registry when
    onnxscript loads its torchlib ops (now, if it already has)."""
    if _TORCHLIB_OPS in sys.modules:
        _register_onnxscript()
    elif importlib.util.find_spec("onnxscript") is not None:
        sys.meta_path.insert(0, _AfterTorchlibOps())


def _unsupported(cell: str, packed: bool, projected: bool, reverse_packed: bool = False) -> None:
    if packed:
        raise FastRNNOnnxError(
            f"fastrnn: a PackedSequence cannot be exported to ONNX here ({_ONNX_OP[cell]} takes "
            "padded input and sequence lengths; the TorchScript exporter, dynamo=False, exports "
            "one that pack_padded_sequence makes inside the model): export with a padded batch, "
            "(seq_len, batch, input_size)")
    if reverse_packed:
        raise FastRNNOnnxError(
            "fastrnn: a bidirectional layer on a PackedSequence cannot be exported to ONNX (torch's "
            "ONNX passes that drop the packing take one node per layer, fastrnn's reverse "
            "direction is a second): export the bidirectional layer with a padded batch")
    if projected:
        raise FastRNNOnnxError(
            "fastrnn: an LSTM with proj_size cannot be exported to ONNX (ONNX's LSTM has no "
            "projection); torch.nn's LSTM with proj_size does not export either")


# ---- the TorchScript exporter (dynamo=False) ----

def _torchscript_symbolic(cell: str):
    from torch.onnx import symbolic_helper as helper

    gates = len(_ONNX_GATES[cell])

    def none(g):
        placeholder = g.op("prim::Constant")
        placeholder.setType(torch._C.OptionalType.ofTensor())
        return placeholder

    def ints(g, values):
        return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

    def onnx_order(g, weight, hidden):
        """weight [gates * H, ...] with its gate chunks in ONNX's order."""
        if gates == 1:
            return weight
        return g.op("Gather", weight, ints(g, _onnx_rows(cell, hidden)), axis_i=0)

    def symbolic(g, input, hx, *rest):
        if cell == "lstm":
            cx, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, _train = rest
        else:
            cx, w_hr = None, None
            w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse = rest[:6]
        # A PackedSequence made in the exported model by pack_padded_sequence: torch's symbolic
        # for that gives the padded input and its lengths (prim::PackPadded), which ONNX's
        # operators take as X and sequence_lens; torch's ONNX passes then drop the packing.
        packed = not helper._is_none(batch_sizes)
        from_lengths = packed and batch_sizes.node().kind() == "prim::PackPadded"
        reverse = helper._maybe_get_const(reverse, "b")
        _unsupported(cell, packed and not from_lengths,
                     w_hr is not None and not helper._is_none(w_hr), from_lengths and reverse)
        sizes = helper._get_tensor_sizes(w_hh)
        if not sizes or sizes[1] is None:
            raise FastRNNOnnxError("fastrnn: ONNX export needs the recurrent weight's shape")
        hidden = sizes[1]
        unsqueeze = lambda value: g.op("Unsqueeze", value, ints(g, [0]))  # noqa: E731
        weights = [unsqueeze(onnx_order(g, w, hidden)) for w in (w_ih, w_hh)]
        if helper._is_none(b_ih):
            bias = none(g)
        else:
            bias = unsqueeze(g.op("Concat", onnx_order(g, b_ih, hidden),
                                  onnx_order(g, b_hh, hidden), axis_i=0))
        states = [none(g) if s is None or helper._is_none(s) else unsqueeze(s) for s in
                  ([hx, cx] if cell == "lstm" else [hx])]
        attributes = {"hidden_size_i": hidden, "direction_s": "reverse" if reverse else "forward"}
        if cell == "gru":
            attributes["linear_before_reset_i"] = 1
        if cell.startswith("rnn"):
            attributes["activations_s"] = ["Tanh" if cell == "rnn_tanh" else "Relu"]
        lengths = batch_sizes if from_lengths else none(g)
        outputs = g.op(_ONNX_OP[cell], input, *weights, bias, lengths, *states,
                       outputs=1 + len(states), **attributes)
        y = g.op("Squeeze", outputs[0], ints(g, [1]))  # [T, 1, B, H] -> [T, B, H]
        finals = [g.op("Squeeze", state, ints(g, [0])) for state in outputs[1:]]
        if cell in ("lstm", "gru"):  # no workspace in inference
            finals.append(g.op("Constant", value_t=torch.zeros(0)))
        return (y, *finals)

    return symbolic


# ---- the torch.export exporter (dynamo=True) ----

def _register_onnxscript() -> None:
    global _onnxscript_registered
    if _onnxscript_registered:
        return
    _onnxscript_registered = True
    from onnxscript import ir
    from onnxscript import opset18 as op
    from onnxscript.function_libs.torch_lib.registration import torch_op

    def translation(cell: str):
        gates = len(_ONNX_GATES[cell])

        def onnx_order(weight, hidden):
            if gates == 1:
                return weight
            return op.Gather(weight, op.Constant(value_ints=_onnx_rows(cell, hidden)), axis=0)

        def layer(input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse):
            _unsupported(cell, batch_sizes is not None, w_hr is not None)
            hidden = w_hh.shape[1]
            if not isinstance(hidden, int):
                raise FastRNNOnnxError("fastrnn: ONNX export needs the recurrent weight's shape")
            zero = op.Constant(value_ints=[0])
            weights = [op.Unsqueeze(onnx_order(w, hidden), zero) for w in (w_ih, w_hh)]
            bias = None
            if b_ih is not None:
                bias = op.Unsqueeze(op.Concat(onnx_order(b_ih, hidden), onnx_order(b_hh, hidden),
                                              axis=0), zero)
            states = [None if s is None else op.Unsqueeze(s, zero)
                      for s in ([hx, cx] if cell == "lstm" else [hx])]
            attributes = {"hidden_size": hidden,
                          "direction": "reverse" if reverse else "forward"}
            if cell == "gru":
                attributes["linear_before_reset"] = 1
            if cell.startswith("rnn"):
                attributes["activations"] = ["Tanh" if cell == "rnn_tanh" else "Relu"]
            node = getattr(op, _ONNX_OP[cell])
            outputs = node(input, *weights, bias, None, *states, **attributes)  # Y, Y_h[, Y_c]
            y = op.Squeeze(outputs[0], op.Constant(value_ints=[1]))
            finals = [op.Squeeze(state, zero) for state in outputs[1:]]
            if cell in ("lstm", "gru"):  # no workspace in inference
                finals.append(op.Constant(value=ir.tensor([], dtype=ir.DataType.FLOAT)))
            return (y, *finals)

        return layer

    lstm, gru = translation("lstm"), translation("gru")
    rnn_tanh, rnn_relu = translation("rnn_tanh"), translation("rnn_relu")

    @torch_op("fastrnn::lstm_forward", trace_only=True)
    def fastrnn_lstm_forward(input, hx=None, cx=None, w_ih=None, w_hh=None, b_ih=None,
                             b_hh=None, w_hr=None, batch_sizes=None, reverse: bool = False,
                             train: bool = False):
        return lstm(input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse)

    @torch_op("fastrnn::gru_forward", trace_only=True)
    def fastrnn_gru_forward(input, hx=None, w_ih=None, w_hh=None, b_ih=None, b_hh=None,
                            batch_sizes=None, reverse: bool = False, train: bool = False):
        return gru(input, hx, None, w_ih, w_hh, b_ih, b_hh, None, batch_sizes, reverse)

    @torch_op("fastrnn::rnn_tanh_forward", trace_only=True)
    def fastrnn_rnn_tanh_forward(input, hx=None, w_ih=None, w_hh=None, b_ih=None, b_hh=None,
                                 batch_sizes=None, reverse: bool = False):
        return rnn_tanh(input, hx, None, w_ih, w_hh, b_ih, b_hh, None, batch_sizes, reverse)

    @torch_op("fastrnn::rnn_relu_forward", trace_only=True)
    def fastrnn_rnn_relu_forward(input, hx=None, w_ih=None, w_hh=None, b_ih=None, b_hh=None,
                                 batch_sizes=None, reverse: bool = False):
        return rnn_relu(input, hx, None, w_ih, w_hh, b_ih, b_hh, None, batch_sizes, reverse)
