"""Pure-PyTorch reference of every fastrnn layer op: the test oracle next to torch.nn.

Each function computes what the op of the same name computes for one layer and one direction,
step by step with torch operators (autograd gives its gradients), in torch.nn's formulas:

    RNN   h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)
    LSTM  i, f, g, o = chunks of x W_ih^T + b_ih + h W_hh^T + b_hh
          c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
          h' = sigmoid(o) * tanh(c'), then h' = h' W_hr^T with a projection
    GRU   r, z, n from x W_ih^T + b_ih (input side) and h W_hh^T + b_hh (recurrent side):
          r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z), n = tanh(x_n + r * h_n)
          h' = (1 - z) * n + z * h

and the cells beyond torch.nn (issue 25; their fused kernels are to be held to these):

    IndRNN          h' = act(x W_ih^T + b_ih + u * h + b_hh), with u = w_hh of shape [H] (a
                    diagonal recurrence: each unit sees only its own previous value)
    LayerNormLSTM   i, f, g, o = chunks of LN(x W_ih^T; a_ih, m_ih) + LN(h W_hh^T; a_hh, m_hh)
                                 + b_ih + b_hh
                    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
                    h' = sigmoid(o) * tanh(LN(c'; a_c, m_c))
    LayerNormGRU    a = LN(x W_ih^T; a_ih, m_ih) + b_ih,  b = LN(h W_hh^T; a_hh, m_hh) + b_hh
                    r = sigmoid(a_r + b_r), z = sigmoid(a_z + b_z), n = tanh(a_n + r * b_n)
                    h' = (1 - z) * n + z * h

where LN(v; a, m) = (v - mean(v)) / sqrt(var(v) + 1e-5) * a + m over each row (the whole 4H or
3H gate row, or the H units of c; biased variance, as nn.LayerNorm), with gain a and bias m (a
missing bias: zero). The LayerNorm LSTM is haste's LayerNormLSTM with a bias on every
normalization; the LayerNorm GRU normalizes each side's whole 3H row before torch's GRU
formulas, so the reset still multiplies h W_hn^T + b_hn (normalized).

Regularizers, for every function (masks are drawn by the caller from torch's RNG and passed in,
as the fused kernels take them; None: not applied):
    input_mask      [B, I]: x_t * input_mask at every step (variational dropout: one mask per
                    sequence and unit, the same at every step; entries 0 or 1 / (1 - p))
    recurrent_mask  [B, P]: the state where it enters the recurrent product (h W_hh^T, or u * h)
                    is h * recurrent_mask, the same at every step; nowhere else (the GRU's z * h
                    and the LSTM's c keep the state as it is)
    zoneout_masks   one [N, size] mask per state (h [N, P], then the LSTM's c [N, H]), in the
                    rows of the output: where 1, the state keeps its previous value at that
                    step (s' = m * s + (1 - m) * s_new); the output is the zoned h
    zoneout         with zoneout_masks None (evaluation): the expectation,
                    s' = p * s + (1 - p) * s_new, as haste defines it
DropConnect on W_hh (AWD-LSTM's weight drop) needs nothing here: it is the layer on
w_hh * mask / (1 - p), one mask per call.

Shapes: input [T, B, I], or [N, I] with batch_sizes [T] (packed: step t covers the first
batch_sizes[t] sequences); hx [B, P]; cx [B, H]. Returns (output, hy) or (output, hy, cy) with
output [T, B, P] or [N, P]. ``reverse=True`` runs every sequence from its own last step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

# step(x_t [n, I], states [n, ...], h_rec [n, P]) -> the new states, the first of which is the
# step's output; h_rec is the state as the recurrent product sees it (recurrent_mask applied).
Step = Callable[[Tensor, Sequence[Tensor], Tensor], Sequence[Tensor]]


def _scan(step: Step, input: Tensor, states: Sequence[Tensor], batch_sizes: Tensor | None,
          reverse: bool, input_mask: Tensor | None = None, recurrent_mask: Tensor | None = None,
          zoneout: float = 0.0,
          zoneout_masks: Sequence[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
    """Runs `step` over time, with the regularizers of the module docstring. Rows past
    batch_sizes[t] keep their state (packed input)."""
    if batch_sizes is None:
        steps, batch = input.shape[0], input.shape[1]
        sizes = [batch] * steps
        rows = input.reshape(steps * batch, input.shape[2])
    else:
        sizes = [int(n) for n in batch_sizes]
        steps, rows = len(sizes), input
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + n)
    state = list(states)
    outputs: list[Tensor | None] = [None] * steps
    for t in (reversed(range(steps)) if reverse else range(steps)):
        n, first = sizes[t], offsets[t]
        x = rows[first:first + n]
        if input_mask is not None:
            x = x * input_mask[:n]
        old = [s[:n] for s in state]
        h_rec = old[0] if recurrent_mask is None else old[0] * recurrent_mask[:n]
        new = list(step(x, old, h_rec))
        if zoneout_masks is not None:
            new = [m[first:first + n] * s + (1 - m[first:first + n]) * s_new
                   for m, s, s_new in zip(zoneout_masks, old, new)]
        elif zoneout > 0:
            new = [zoneout * s + (1 - zoneout) * s_new for s, s_new in zip(old, new)]
        outputs[t] = new[0]
        state = [torch.cat([fresh, kept[n:]]) for fresh, kept in zip(new, state)]
    output = torch.cat(outputs)  # type: ignore[arg-type]
    if batch_sizes is None:
        output = output.reshape(steps, sizes[0] if steps else input.shape[1], -1)
    return output, state


def _layer_norm(v: Tensor, gain: Tensor, bias: Tensor | None) -> Tensor:
    """LN(v; gain, bias) over each row, written out (mean, biased variance, eps 1e-5)."""
    mean = v.mean(dim=-1, keepdim=True)
    var = (v - mean).pow(2).mean(dim=-1, keepdim=True)
    out = (v - mean) * torch.rsqrt(var + 1e-5) * gain
    return out if bias is None else out + bias


def rnn_layer(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
              b_hh: Tensor | None = None, batch_sizes: Tensor | None = None, reverse: bool = False,
              nonlinearity: str = "tanh", **regularizers: Any) -> tuple[Tensor, Tensor]:
    activation = torch.tanh if nonlinearity == "tanh" else torch.relu

    def step(x: Tensor, states: Sequence[Tensor], h_rec: Tensor) -> list[Tensor]:
        return [activation(F.linear(x, w_ih, b_ih) + F.linear(h_rec, w_hh, b_hh))]

    output, (hy,) = _scan(step, input, [hx], batch_sizes, reverse, **regularizers)
    return output, hy


def lstm_layer(input: Tensor, hx: Tensor, cx: Tensor, w_ih: Tensor, w_hh: Tensor,
               b_ih: Tensor | None = None, b_hh: Tensor | None = None, w_hr: Tensor | None = None,
               batch_sizes: Tensor | None = None, reverse: bool = False,
               **regularizers: Any) -> tuple[Tensor, Tensor, Tensor]:
    def step(x: Tensor, states: Sequence[Tensor], h_rec: Tensor) -> list[Tensor]:
        c = states[1]
        i, f, g, o = (F.linear(x, w_ih, b_ih) + F.linear(h_rec, w_hh, b_hh)).chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        if w_hr is not None:
            h_new = F.linear(h_new, w_hr)
        return [h_new, c_new]

    output, (hy, cy) = _scan(step, input, [hx, cx], batch_sizes, reverse, **regularizers)
    return output, hy, cy


def gru_layer(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
              b_hh: Tensor | None = None, batch_sizes: Tensor | None = None,
              reverse: bool = False, **regularizers: Any) -> tuple[Tensor, Tensor]:
    def step(x: Tensor, states: Sequence[Tensor], h_rec: Tensor) -> list[Tensor]:
        h = states[0]
        x_r, x_z, x_n = F.linear(x, w_ih, b_ih).chunk(3, dim=1)
        h_r, h_z, h_n = F.linear(h_rec, w_hh, b_hh).chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return [(1 - z) * n + z * h]

    output, (hy,) = _scan(step, input, [hx], batch_sizes, reverse, **regularizers)
    return output, hy


def indrnn_layer(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor,
                 b_ih: Tensor | None = None, b_hh: Tensor | None = None,
                 batch_sizes: Tensor | None = None, reverse: bool = False,
                 nonlinearity: str = "relu", **regularizers: Any) -> tuple[Tensor, Tensor]:
    """IndRNN: w_hh is the vector u [H] of the diagonal recurrence."""
    if w_hh.dim() != 1:
        raise ValueError(f"indrnn_layer: w_hh is the recurrent vector u [H], got {list(w_hh.shape)}")
    activation = torch.tanh if nonlinearity == "tanh" else torch.relu

    def step(x: Tensor, states: Sequence[Tensor], h_rec: Tensor) -> list[Tensor]:
        recurrent = w_hh * h_rec if b_hh is None else w_hh * h_rec + b_hh
        return [activation(F.linear(x, w_ih, b_ih) + recurrent)]

    output, (hy,) = _scan(step, input, [hx], batch_sizes, reverse, **regularizers)
    return output, hy


def layer_norm_lstm_layer(input: Tensor, hx: Tensor, cx: Tensor, w_ih: Tensor, w_hh: Tensor,
                          ln_ih: Sequence[Tensor | None], ln_hh: Sequence[Tensor | None],
                          ln_c: Sequence[Tensor | None], b_ih: Tensor | None = None,
                          b_hh: Tensor | None = None, batch_sizes: Tensor | None = None,
                          reverse: bool = False,
                          **regularizers: Any) -> tuple[Tensor, Tensor, Tensor]:
    """LayerNorm LSTM; ln_ih, ln_hh ([4H] each) and ln_c ([H]) are (gain, bias or None)."""
    def step(x: Tensor, states: Sequence[Tensor], h_rec: Tensor) -> list[Tensor]:
        c = states[1]
        pre = (_layer_norm(F.linear(x, w_ih), *ln_ih) + _layer_norm(F.linear(h_rec, w_hh), *ln_hh))
        for bias in (b_ih, b_hh):
            if bias is not None:
                pre = pre + bias
        i, f, g, o = pre.chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return [torch.sigmoid(o) * torch.tanh(_layer_norm(c_new, *ln_c)), c_new]

    output, (hy, cy) = _scan(step, input, [hx, cx], batch_sizes, reverse, **regularizers)
    return output, hy, cy


def layer_norm_gru_layer(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor,
                         ln_ih: Sequence[Tensor | None], ln_hh: Sequence[Tensor | None],
                         b_ih: Tensor | None = None, b_hh: Tensor | None = None,
                         batch_sizes: Tensor | None = None, reverse: bool = False,
                         **regularizers: Any) -> tuple[Tensor, Tensor]:
    """LayerNorm GRU; ln_ih and ln_hh ([3H] each) are (gain, bias or None)."""
    def step(x: Tensor, states: Sequence[Tensor], h_rec: Tensor) -> list[Tensor]:
        h = states[0]
        a = _layer_norm(F.linear(x, w_ih), *ln_ih)
        b = _layer_norm(F.linear(h_rec, w_hh), *ln_hh)
        a = a if b_ih is None else a + b_ih
        b = b if b_hh is None else b + b_hh
        a_r, a_z, a_n = a.chunk(3, dim=1)
        b_r, b_z, b_n = b.chunk(3, dim=1)
        r = torch.sigmoid(a_r + b_r)
        z = torch.sigmoid(a_z + b_z)
        n = torch.tanh(a_n + r * b_n)
        return [(1 - z) * n + z * h]

    output, (hy,) = _scan(step, input, [hx], batch_sizes, reverse, **regularizers)
    return output, hy
