"""Drop-in replacements for torch.nn.RNNCell, LSTMCell and GRUCell.

Same constructor, parameters (``bias=False`` leaves ``bias_ih``/``bias_hh`` as None),
initialisation, repr, inputs, outputs and errors as torch.nn. Each call is one fused op call
forward (the layer op over a one-step sequence: both GEMMs and one fused pointwise pass) and one
backward, with no per-gate temporaries.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import init
from torch.nn.parameter import Parameter

from fastrnn import _onnx, _ops, functional  # noqa: F401  (_ops registers the ops)

__all__ = ["RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

# c10's names, as torch's own dtype-mismatch messages print them.
_SCALAR_TYPE_NAMES = {torch.float32: "Float", torch.float64: "Double", torch.float16: "Half",
                      torch.bfloat16: "BFloat16"}


def _dtype_name(dtype: torch.dtype) -> str:
    return _SCALAR_TYPE_NAMES.get(dtype, str(dtype))


class RNNCellBase(nn.Module):
    """Base of fastrnn's cells: torch.nn.RNNCellBase's parameters and checks."""

    __constants__ = ["input_size", "hidden_size", "bias"]

    input_size: int
    hidden_size: int
    bias: bool
    weight_ih: Tensor
    weight_hh: Tensor

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device: Any = None, dtype: Any = None) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(torch.empty((num_chunks * hidden_size, input_size), **factory_kwargs))
        self.weight_hh = Parameter(torch.empty((num_chunks * hidden_size, hidden_size), **factory_kwargs))
        if bias:
            self.bias_ih = Parameter(torch.empty(num_chunks * hidden_size, **factory_kwargs))
            self.bias_hh = Parameter(torch.empty(num_chunks * hidden_size, **factory_kwargs))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def __prepare_scriptable__(self) -> RNNCellBase:
        from fastrnn.modules import _unscriptable

        raise _unscriptable(type(self).__name__)

    def __setattr__(self, name: str, value: Any) -> None:
        from fastrnn.modules import _warn_if_quantizing

        _warn_if_quantizing(self, name)
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if "bias" in self.__dict__ and self.bias is not True:
            s += ", bias={bias}"
        if "nonlinearity" in self.__dict__ and self.nonlinearity != "tanh":
            s += ", nonlinearity={nonlinearity}"
        return s.format(**self.__dict__)

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def _check_step(self, input: Tensor, states: list[Tensor]) -> None:
        """torch's checks of a cell call (made in C++ there), in its order and words, on a
        batched input [B, I] and states [B, H]."""
        input_size = self.weight_ih.size(1)
        if input.size(1) != input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {input.size(1)} expected {input_size}")
        hidden_size = self.weight_hh.size(1)
        for label, state in enumerate(states):
            if input.size(0) != state.size(0):
                raise RuntimeError(f"Input batch size {input.size(0)} doesn't match hidden{label} "
                                   f"batch size {state.size(0)}")
            if state.size(1) != hidden_size:
                raise RuntimeError(f"hidden{label} has inconsistent hidden_size: got "
                                   f"{state.size(1)}, expected {hidden_size}")
        # torch fails in its first matrix product when dtypes differ (unless autocast casts them).
        if torch._C._is_any_autocast_enabled():
            return
        for operand, weight in [(input, self.weight_ih)] + [(s, self.weight_hh) for s in states[:1]]:
            if operand.dtype != weight.dtype:
                raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got "
                                   f"{_dtype_name(operand.dtype)} and {_dtype_name(weight.dtype)}")

    def _zero_width(self, input: Tensor, states: list[Tensor] | None, count: int) -> list[Tensor]:
        """hidden_size 0: torch.nn's result, ``count`` tensors of [B, 0] (h, and the LSTM's c),
        in the graph of the input, states and weights as torch's are (so each gets its gradient,
        zeros or empty, as there). fastrnn's ops take no zero-width weights."""
        h0 = states[0] if states else input.new_zeros(input.size(0), 0)
        h = input.matmul(self.weight_ih.t()) + h0.matmul(self.weight_hh.t())
        if self.bias_ih is not None:
            h = h + self.bias_ih + self.bias_hh
        if count == 1:
            return [h]
        return [h, h + states[1] if states else h]

    def _needs_grad(self, *tensors: Tensor | None) -> bool:
        return functional._needs_grad([*tensors, *self.parameters()])


def _batched(name: str, input: Tensor, states: list[Tensor] | None,
             state_label: str) -> tuple[Tensor, list[Tensor] | None, bool]:
    """torch.nn's rank checks and unbatched handling of a cell call. state_label formats the
    rank error of state i ("hidden" for one state, "hx[{i}]" for the LSTM's two)."""
    if input.dim() not in (1, 2):
        raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
    for index, state in enumerate(states or []):
        if state.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected {state_label.format(index)} to be 1D or 2D, "
                             f"got {state.dim()}D instead")
    is_batched = input.dim() == 2
    if not is_batched:
        input = input.unsqueeze(0)
        if states is not None:
            states = [state.unsqueeze(0) for state in states]
    return input, states, is_batched


class RNNCell(RNNCellBase):
    """Drop-in for :class:`torch.nn.RNNCell`: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    ``RNNCell(input_size, hidden_size, bias=True, nonlinearity='tanh', device=None, dtype=None)``.
    """

    __constants__ = ["input_size", "hidden_size", "bias", "nonlinearity"]
    nonlinearity: str

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device: Any = None, dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        _onnx.register_if_exporting()
        input, states, is_batched = _batched(
            "RNNCell", input, None if hx is None else [hx], "hidden")
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        self._check_step(input, states or [])
        if self.hidden_size == 0:
            (h,) = self._zero_width(input, states, 1)
        else:
            op = torch.ops.fastrnn.rnn_tanh_forward if self.nonlinearity == "tanh" else \
                torch.ops.fastrnn.rnn_relu_forward
            _, h = op(input.unsqueeze(0), states[0] if states else None, self.weight_ih,
                      self.weight_hh, self.bias_ih, self.bias_hh, None, False)
        return h if is_batched else h.squeeze(0)


class GRUCell(RNNCellBase):
    """Drop-in for :class:`torch.nn.GRUCell` (gate order r, z, n; ``n = tanh(W_in x + b_in +
    r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``).

    ``GRUCell(input_size, hidden_size, bias=True, device=None, dtype=None)``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        _onnx.register_if_exporting()
        input, states, is_batched = _batched(
            "GRUCell", input, None if hx is None else [hx], "hidden")
        self._check_step(input, states or [])
        h0 = states[0] if states else None
        if self.hidden_size == 0:
            (h,) = self._zero_width(input, states, 1)
        else:
            _, h, _ = torch.ops.fastrnn.gru_forward(
                input.unsqueeze(0), h0, self.weight_ih, self.weight_hh, self.bias_ih,
                self.bias_hh, None, False, self._needs_grad(input, h0))
        return h if is_batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    """Drop-in for :class:`torch.nn.LSTMCell` (gate order i, f, g, o). Returns ``(h', c')``.

    ``LSTMCell(input_size, hidden_size, bias=True, device=None, dtype=None)``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input: Tensor,
                hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        _onnx.register_if_exporting()
        input, states, is_batched = _batched(
            "LSTMCell", input, None if hx is None else list(hx), "hx[{}]")
        self._check_step(input, states or [])
        if self.hidden_size == 0:
            h, c = self._zero_width(input, states, 2)
            return (h, c) if is_batched else (h.squeeze(0), c.squeeze(0))
        h0, c0 = states if states else (None, None)
        batch_sizes = None
        if input.device.type == "cpu" and torch.is_autocast_enabled("cpu") and input.size(0) > 0:
            # Under CPU autocast torch's LSTMCell keeps a float32 cell state in float32 (its cell
            # is linears plus pointwise math), unlike nn.LSTM's oneDNN layer, which runs wholly
            # in the autocast dtype. The op's autocast rule gives the former to packed input
            # (csrc/ops/autocast.cpp), and one step of B rows is the packed sequence [B].
            batch_sizes = torch.tensor([input.size(0)])
        else:
            input = input.unsqueeze(0)
        _, h, c, _ = torch.ops.fastrnn.lstm_forward(
            input, h0, c0, self.weight_ih, self.weight_hh, self.bias_ih,
            self.bias_hh, None, batch_sizes, False, self._needs_grad(input, h0, c0))
        if not is_batched:
            return h.squeeze(0), c.squeeze(0)
        return h, c
