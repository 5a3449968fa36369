"""Stateless multi-layer RNN, LSTM and GRU taking their weights explicitly.

Each function runs a whole stack (every layer and direction) with one fused op call per layer and
direction, and matches the corresponding ``torch._VF`` call of torch.nn:

    output, h_n = fastrnn.functional.gru(input, hx, params, has_biases, num_layers, dropout,
                                         training, bidirectional, batch_first)

``params`` is the flat weight list in torch.nn's order (``module._flat_weights``): per layer and
direction ``w_ih, w_hh[, b_ih, b_hh][, w_hr]``. ``input`` is [T, B, I] ([B, T, I] with
``batch_first``) or, when ``batch_sizes`` is given, the packed data [N, I] of a PackedSequence.
``hx`` is [L * D, B, P] (LSTM: ``(h0, c0)`` with c0 [L * D, B, H]), or None for zeros; the
returned final states have those shapes. Dropout (probability ``dropout``, only when ``training``) is applied to the
output of every layer but the last, drawing from torch's RNG as torch.nn does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from fastrnn import _onnx, _ops  # noqa: F401  (_ops registers the ops, fake kernels and autograd)

__all__ = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def _needs_grad(tensors: Sequence[Tensor | None]) -> bool:
    """The ``train`` flag of the LSTM and GRU ops: whether a call saves the workspace backward
    needs. False while torch.jit.trace records the call (the flag would become a constant of the
    traced graph, and differ between its runs with and without grad); the ops' autograd kernel
    saves the workspace whenever it records a graph anyway."""
    if torch.jit.is_tracing():
        return False
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _stack(cell: str, input: Tensor, hx: Tensor | None, cx: Tensor | None, params: Sequence[Tensor],
           has_biases: bool, num_layers: int, dropout: float, training: bool,
           bidirectional: bool, batch_first: bool,
           batch_sizes: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    _onnx.register_if_exporting()
    directions = 2 if bidirectional else 1
    per_layer = len(params) // (num_layers * directions)
    has_projection = per_layer in (3, 5)
    if batch_first and batch_sizes is None:
        input = input.transpose(0, 1)
    if batch_sizes is None and input.size(0) == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    # The ops of cells with a workspace (LSTM, GRU) save it for backward only when a gradient
    # will be asked for: their `train` flag. Cells with a cell state (LSTM) take and return c
    # beside h, and a projection.
    info = _ops.CELLS[cell]
    op = getattr(torch.ops.fastrnn, cell + "_forward")
    train_flag = (_needs_grad([input, hx, cx, *params]),) if info["workspace_blocks"] else ()
    has_cell_state = info["cell_state"]

    layer_input = input
    h_n: list[Tensor] = []
    c_n: list[Tensor] = []
    # Under torch.compile a packed batch's size is data: each op call without an initial state
    # makes its final state's batch a fresh unbacked symbol (fastrnn/_ops.py, _batch). The calls
    # after the first take zeros shaped like the first call's final states instead (the same
    # numbers), so the stack has one such symbol: torch 2.14's inductor fails on a sum of
    # several ("expected [u2, u1, u3] to have been codegen-ed").
    share_zeros = batch_sizes is not None and hx is None and torch.compiler.is_compiling()
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            weights = params[index * per_layer:(index + 1) * per_layer]
            w_ih, w_hh = weights[0], weights[1]
            b_ih, b_hh = (weights[2], weights[3]) if has_biases else (None, None)
            w_hr = weights[-1] if has_projection else None
            reverse = direction == 1
            h0 = hx[index] if hx is not None else None
            if share_zeros and h_n:
                h0 = h_n[0].new_zeros(h_n[0].shape)
            if has_cell_state:
                c0 = cx[index] if cx is not None else None
                if share_zeros and c_n:
                    c0 = c_n[0].new_zeros(c_n[0].shape)
                y, hy, cy, *_ = op(layer_input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                                   batch_sizes, reverse, *train_flag)
                c_n.append(cy)
            else:
                y, hy, *_ = op(layer_input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse,
                               *train_flag)
            outputs.append(y)
            h_n.append(hy)
        layer_input = outputs[0] if directions == 1 else torch.cat(outputs, dim=-1)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, dropout, training=True)

    output = layer_input
    if batch_first and batch_sizes is None:
        output = output.transpose(0, 1)
    return output, torch.stack(h_n), (torch.stack(c_n) if has_cell_state else None)


def rnn_tanh(input: Tensor, hx: Tensor | None, params: Sequence[Tensor], has_biases: bool,
             num_layers: int, dropout: float, training: bool, bidirectional: bool,
             batch_first: bool = False, batch_sizes: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Elman RNN with tanh: ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``."""
    output, h_n, _ = _stack("rnn_tanh", input, hx, None, params, has_biases, num_layers, dropout,
                            training, bidirectional, batch_first, batch_sizes)
    return output, h_n


def rnn_relu(input: Tensor, hx: Tensor | None, params: Sequence[Tensor], has_biases: bool,
             num_layers: int, dropout: float, training: bool, bidirectional: bool,
             batch_first: bool = False, batch_sizes: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Elman RNN with ReLU: ``h_t = relu(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``."""
    output, h_n, _ = _stack("rnn_relu", input, hx, None, params, has_biases, num_layers, dropout,
                            training, bidirectional, batch_first, batch_sizes)
    return output, h_n


def lstm(input: Tensor, hx: tuple[Tensor, Tensor] | None, params: Sequence[Tensor], has_biases: bool,
         num_layers: int, dropout: float, training: bool, bidirectional: bool,
         batch_first: bool = False,
         batch_sizes: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM (gate order i, f, g, o), with an optional projection ``h_t = W_hr (o * tanh(c_t))``
    when ``params`` carries ``w_hr`` for each layer and direction. Returns (output, h_n, c_n)."""
    h0, c0 = hx if hx is not None else (None, None)
    output, h_n, c_n = _stack("lstm", input, h0, c0, params, has_biases, num_layers,
                              dropout, training, bidirectional, batch_first, batch_sizes)
    assert c_n is not None
    return output, h_n, c_n


def gru(input: Tensor, hx: Tensor | None, params: Sequence[Tensor], has_biases: bool, num_layers: int,
        dropout: float, training: bool, bidirectional: bool, batch_first: bool = False,
        batch_sizes: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """GRU (gate order r, z, n) with torch's ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``."""
    output, h_n, _ = _stack("gru", input, hx, None, params, has_biases, num_layers, dropout,
                            training, bidirectional, batch_first, batch_sizes)
    return output, h_n
