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

Two regularizers beyond torch.nn, keyword arguments of every function, applied only when
``training`` (each drawn from torch's RNG, so ``torch.manual_seed`` reproduces them; autograd
saves the masks for backward):

- ``variational_dropout`` (Gal and Ghahramani): each layer's input is multiplied by one mask per
  sequence and input unit, the same at every time step (entries 0 or 1 / (1 - p));
- ``weight_dropout`` (DropConnect on W_hh, as AWD-LSTM's WeightDrop): each layer and direction
  runs on ``W_hh * mask``, mask 0 or 1 / (1 - p), one per call, shared by every time step.

A mask of shape S is ``(torch.rand(S) >= p) / (1 - p)`` (one float32 draw; a packed input's
[B, F] mask is indexed by each row's sequence). Per layer, the input's mask is drawn first, then
the W_hh masks of its directions in order, then torch's inter-layer dropout after the layer.
Under torch.compile the draws come from inductor's generator, as for torch's own dropout. Both
act on whole tensors outside the recurrence (one elementwise pass over the layer's input or over
W_hh, against the recurrence's T * B * G * P multiply-adds), so the fused kernels run unchanged;
fastrnn/_reference.py states them as ``input_mask`` and a masked ``w_hh``.
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


def _dropout_mask(like: Tensor, shape: Sequence[int], p: float) -> Tensor:
    """A dropout mask of `shape` in like's dtype and device: 0 with probability p, else
    1 / (1 - p), from one float32 torch.rand draw (kept where ``rand >= p``). torch's
    bernoulli_, which F.dropout uses, takes 2.4 ms for a 1024 x 256 W_hh on the CPU, rand 1.0."""
    if p >= 1:
        return like.new_zeros(shape)
    keep = torch.rand(shape, dtype=torch.float32, device=like.device) >= p
    return keep.to(like.dtype) / (1 - p)


def _row_sequences(batch_sizes: Tensor, device: torch.device) -> Tensor:
    """The sequence of each row of a packed input: row r of step t belongs to r - offset(t)."""
    sizes = batch_sizes.to(torch.long)
    offsets = torch.cumsum(sizes, 0) - sizes
    rows = int(sizes.sum())
    return (torch.arange(rows) - torch.repeat_interleave(offsets, sizes)).to(device)


def _variational_mask(input: Tensor, p: float, packed: tuple[Tensor, int] | None) -> Tensor:
    """The variational dropout mask of a layer input [T, B, F] (padded) or [N, F] (packed, with
    `packed` = (_row_sequences, B)): one draw per sequence and feature, [B, F], broadcast over
    the time steps (packed: each row takes its sequence's)."""
    if packed is None:
        return _dropout_mask(input, (input.shape[1], input.shape[-1]), p).unsqueeze(0)
    row_sequences, batch = packed
    return _dropout_mask(input, (batch, input.shape[-1]), p).index_select(0, row_sequences)


def _stack(cell: str, input: Tensor, hx: Tensor | None, cx: Tensor | None, params: Sequence[Tensor],
           has_biases: bool, num_layers: int, dropout: float, training: bool,
           bidirectional: bool, batch_first: bool, batch_sizes: Tensor | None,
           weight_dropout: float = 0.0,
           variational_dropout: float = 0.0) -> tuple[Tensor, Tensor, Tensor | None]:
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
    # Variational dropout of packed input: which sequence each row is, once for every layer.
    packed_rows = None
    if training and variational_dropout > 0 and batch_sizes is not None:
        packed_rows = (_row_sequences(batch_sizes, input.device), int(batch_sizes[0]))
    for layer in range(num_layers):
        outputs = []
        if training and variational_dropout > 0:
            layer_input = layer_input * _variational_mask(layer_input, variational_dropout,
                                                          packed_rows)
        for direction in range(directions):
            index = layer * directions + direction
            weights = params[index * per_layer:(index + 1) * per_layer]
            w_ih, w_hh = weights[0], weights[1]
            if training and weight_dropout > 0:
                w_hh = w_hh * _dropout_mask(w_hh, w_hh.shape, weight_dropout)
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
             batch_first: bool = False, batch_sizes: Tensor | None = None,
             *, weight_dropout: float = 0.0,
             variational_dropout: float = 0.0) -> tuple[Tensor, Tensor]:
    """Elman RNN with tanh: ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``."""
    output, h_n, _ = _stack("rnn_tanh", input, hx, None, params, has_biases, num_layers, dropout,
                            training, bidirectional, batch_first, batch_sizes,
                            weight_dropout=weight_dropout,
                            variational_dropout=variational_dropout)
    return output, h_n


def rnn_relu(input: Tensor, hx: Tensor | None, params: Sequence[Tensor], has_biases: bool,
             num_layers: int, dropout: float, training: bool, bidirectional: bool,
             batch_first: bool = False, batch_sizes: Tensor | None = None,
             *, weight_dropout: float = 0.0,
             variational_dropout: float = 0.0) -> tuple[Tensor, Tensor]:
    """Elman RNN with ReLU: ``h_t = relu(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``."""
    output, h_n, _ = _stack("rnn_relu", input, hx, None, params, has_biases, num_layers, dropout,
                            training, bidirectional, batch_first, batch_sizes,
                            weight_dropout=weight_dropout,
                            variational_dropout=variational_dropout)
    return output, h_n


def lstm(input: Tensor, hx: tuple[Tensor, Tensor] | None, params: Sequence[Tensor], has_biases: bool,
         num_layers: int, dropout: float, training: bool, bidirectional: bool,
         batch_first: bool = False, batch_sizes: Tensor | None = None,
         *, weight_dropout: float = 0.0,
         variational_dropout: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM (gate order i, f, g, o), with an optional projection ``h_t = W_hr (o * tanh(c_t))``
    when ``params`` carries ``w_hr`` for each layer and direction. Returns (output, h_n, c_n)."""
    h0, c0 = hx if hx is not None else (None, None)
    output, h_n, c_n = _stack("lstm", input, h0, c0, params, has_biases, num_layers,
                              dropout, training, bidirectional, batch_first, batch_sizes,
                              weight_dropout=weight_dropout,
                              variational_dropout=variational_dropout)
    assert c_n is not None
    return output, h_n, c_n


def gru(input: Tensor, hx: Tensor | None, params: Sequence[Tensor], has_biases: bool, num_layers: int,
        dropout: float, training: bool, bidirectional: bool, batch_first: bool = False,
        batch_sizes: Tensor | None = None, *, weight_dropout: float = 0.0,
        variational_dropout: float = 0.0) -> tuple[Tensor, Tensor]:
    """GRU (gate order r, z, n) with torch's ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``."""
    output, h_n, _ = _stack("gru", input, hx, None, params, has_biases, num_layers, dropout,
                            training, bidirectional, batch_first, batch_sizes,
                            weight_dropout=weight_dropout,
                            variational_dropout=variational_dropout)
    return output, h_n
