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

Shapes: input [T, B, I], or [N, I] with batch_sizes [T] (packed: step t covers the first
batch_sizes[t] sequences); hx [B, P]; cx [B, H]. Returns (output, hy) or (output, hy, cy) with
output [T, B, P] or [N, P]. ``reverse=True`` runs every sequence from its own last step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Step = Callable[[Tensor, Sequence[Tensor]], Sequence[Tensor]]


def _scan(step: Step, input: Tensor, states: Sequence[Tensor], batch_sizes: Tensor | None,
          reverse: bool) -> tuple[Tensor, list[Tensor]]:
    """Runs `step` over time. step(x_t [n, I], states [n, ...]) returns the new states, the first
    of which is the step's output. Rows past batch_sizes[t] keep their state (packed input)."""
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
        n = sizes[t]
        new = step(rows[offsets[t]:offsets[t] + n], [s[:n] for s in state])
        outputs[t] = new[0]
        state = [torch.cat([fresh, old[n:]]) for fresh, old in zip(new, state)]
    output = torch.cat(outputs)  # type: ignore[arg-type]
    if batch_sizes is None:
        output = output.reshape(steps, sizes[0] if steps else input.shape[1], -1)
    return output, state


def rnn_layer(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
              b_hh: Tensor | None = None, batch_sizes: Tensor | None = None, reverse: bool = False,
              nonlinearity: str = "tanh") -> tuple[Tensor, Tensor]:
    activation = torch.tanh if nonlinearity == "tanh" else torch.relu

    def step(x: Tensor, states: Sequence[Tensor]) -> list[Tensor]:
        return [activation(F.linear(x, w_ih, b_ih) + F.linear(states[0], w_hh, b_hh))]

    output, (hy,) = _scan(step, input, [hx], batch_sizes, reverse)
    return output, hy


def lstm_layer(input: Tensor, hx: Tensor, cx: Tensor, w_ih: Tensor, w_hh: Tensor,
               b_ih: Tensor | None = None, b_hh: Tensor | None = None, w_hr: Tensor | None = None,
               batch_sizes: Tensor | None = None, reverse: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    def step(x: Tensor, states: Sequence[Tensor]) -> list[Tensor]:
        h, c = states
        i, f, g, o = (F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        if w_hr is not None:
            h_new = F.linear(h_new, w_hr)
        return [h_new, c_new]

    output, (hy, cy) = _scan(step, input, [hx, cx], batch_sizes, reverse)
    return output, hy, cy


def gru_layer(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
              b_hh: Tensor | None = None, batch_sizes: Tensor | None = None,
              reverse: bool = False) -> tuple[Tensor, Tensor]:
    def step(x: Tensor, states: Sequence[Tensor]) -> list[Tensor]:
        h = states[0]
        x_r, x_z, x_n = F.linear(x, w_ih, b_ih).chunk(3, dim=1)
        h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return [(1 - z) * n + z * h]

    output, (hy,) = _scan(step, input, [hx], batch_sizes, reverse)
    return output, hy
