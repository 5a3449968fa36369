"""Fake (meta) kernels for the ops of ``torch.ops.fastrnn``.

The schemas and the CPU/CUDA kernels are C++ (csrc/ops); loading ``fastrnn._C`` registers them.
This module adds what torch.compile and torch.export need on top: a fake kernel per op, output
shapes from input shapes, without reading data. Autograd is C++ (csrc/ops/autograd.cpp): each
forward op's backward calls the matching backward op with what the forward op saved (its output
and its workspace).

Shapes (one layer, one direction; see csrc/ops/schemas.cpp):
    input        [T, B, I], or [N, I] with batch_sizes [T] (packed, int64, CPU)
    hx           [B, P]           cx  [B, H] (LSTM); either may be None (zeros)
    output       [T, B, P] or [N, P]
    workspace    [N, 5H] (LSTM) or [N, 4H] (GRU) when train=True, else [0]
with P = proj_size for an LSTM with projection (w_hr [P, H]), else H.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastrnn import _C  # noqa: F401  (registers the op schemas and kernels)

# The extension's cells by name (csrc/include/fastrnn/cells.h, kCells): each a dict of code,
# name, gates, workspace_blocks (per-unit blocks of a workspace row: LSTM i f g o | c, GRU
# r z n | W_hn h + b_hn; 0 for the vanilla RNN, which saves nothing but its output) and
# cell_state (whether it carries c beside h, and may have a projection).
CELLS = {cell["name"]: cell for cell in _C.cells()}


def _sequence_shape(input: Tensor, batch_sizes: Tensor | None, features: int) -> tuple[int, ...]:
    if batch_sizes is None:
        return (input.shape[0], input.shape[1], features)
    return (input.shape[0], features)


def _rows(input: Tensor, batch_sizes: Tensor | None) -> int:
    return input.shape[0] if batch_sizes is not None else input.shape[0] * input.shape[1]


def _workspace(cell: str, input: Tensor, batch_sizes: Tensor | None, hidden: int, train: bool) -> Tensor:
    # float32 for float16/bfloat16 input: saved gates and cell states keep full precision
    dtype = torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype
    if not train:
        return input.new_empty((0,), dtype=dtype)
    return input.new_empty((_rows(input, batch_sizes), CELLS[cell]["workspace_blocks"] * hidden), dtype=dtype)


def _grad_input_like(input: Tensor, input_grad: bool) -> Tensor:
    return torch.empty_like(input) if input_grad else input.new_empty((0,))


def _batch(input: Tensor, batch_sizes: Tensor | None):
    """Rows of the state: B of a padded input; batch_sizes[0] of a packed one, which only the
    data knows, so under tracing it is a fresh (unbacked) symbolic size, at least 1."""
    if batch_sizes is None:
        return input.shape[1]
    ctx = torch.library.get_ctx()
    shape_env = getattr(ctx, "_shape_env", None)
    if shape_env is not None and not shape_env.allow_dynamic_output_shape_ops:
        # ctx.new_dynamic_size refuses unless torch._dynamo.config.capture_dynamic_output_shape_ops
        # is set, which would make torch.compile break the graph at every packed call without an
        # initial state. The size is only the batch of the returned final state, which inductor
        # handles like any unbacked size, so allocate it directly.
        from torch._library.fake_impl import allocate_size

        return allocate_size(shape_env, min_val=1)
    return ctx.new_dynamic_size(min=1)


def _check_same_kind(op: str, input: Tensor, **tensors: Tensor | None) -> None:
    """The C++ ops' dtype and device checks (csrc/ops/layer_args.cpp), with their messages.

    A fake kernel is also what runs when any argument is a meta tensor (Meta outranks CPU in
    dispatch): without this check a CPU input with a meta weight or state would return
    uninitialised CPU tensors instead of an error."""
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        if tensor.dtype != input.dtype:
            raise RuntimeError(f"fastrnn::{op}: {name} has dtype {_C10_NAMES.get(tensor.dtype, tensor.dtype)} "
                               f"but input has dtype {_C10_NAMES.get(input.dtype, input.dtype)}; "
                               "all tensors must have the same dtype")
        if tensor.device != input.device:
            raise RuntimeError(f"fastrnn::{op}: {name} is on {tensor.device} but input is on "
                               f"{input.device}; all tensors must be on the same device")


# c10's dtype names, as the C++ checks print them.
_C10_NAMES = {torch.float32: "Float", torch.float64: "Double", torch.float16: "Half",
              torch.bfloat16: "BFloat16"}


def _final_states(input: Tensor, batch_sizes: Tensor | None,
                  states: list[tuple[Tensor | None, int]]) -> list[Tensor]:
    """Final states shaped like the given initial ones, or [B, size] where none was given."""
    batch = None
    finals = []
    for state, size in states:
        if state is not None:
            finals.append(torch.empty_like(state))
            continue
        if batch is None:
            batch = _batch(input, batch_sizes)
        finals.append(input.new_empty((batch, size)))
    return finals


# ---- fake kernels ----


def _single_state_backward_fake(input: Tensor, hx: Tensor | None, w_ih: Tensor, w_hh: Tensor,
                                input_grad: bool) -> tuple[Tensor, ...]:
    """Gradients of the RNN and GRU backward ops: input, hx, w_ih, w_hh, b_ih, b_hh."""
    gates = w_ih.shape[0]
    grad_hx = torch.empty_like(hx) if hx is not None else w_ih.new_empty((0,))
    return (_grad_input_like(input, input_grad), grad_hx, torch.empty_like(w_ih),
            torch.empty_like(w_hh), w_ih.new_empty((gates,)), w_ih.new_empty((gates,)))


def _register_rnn_fakes(name: str) -> None:
    @torch.library.register_fake(f"fastrnn::{name}_forward")
    def _(input, hx, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse):
        _check_same_kind(f"{name}_forward", input, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh,
                         hx=hx)
        output = input.new_empty(_sequence_shape(input, batch_sizes, w_hh.shape[1]))
        (hy,) = _final_states(input, batch_sizes, [(hx, w_hh.shape[1])])
        return output, hy

    @torch.library.register_fake(f"fastrnn::{name}_backward")
    def _(grad_output, grad_hy, input, hx, w_ih, w_hh, output, batch_sizes, reverse, input_grad):
        _check_same_kind(f"{name}_backward", input, w_ih=w_ih, w_hh=w_hh, hx=hx)
        return _single_state_backward_fake(input, hx, w_ih, w_hh, input_grad)


_register_rnn_fakes("rnn_tanh")
_register_rnn_fakes("rnn_relu")


@torch.library.register_fake("fastrnn::lstm_forward")
def _(input, hx, cx, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, train):
    _check_same_kind("lstm_forward", input, w_hr=w_hr, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh,
                     hx=hx, cx=cx)
    hidden, out = w_ih.shape[0] // 4, w_hh.shape[1]
    output = input.new_empty(_sequence_shape(input, batch_sizes, out))
    hy, cy = _final_states(input, batch_sizes, [(hx, out), (cx, hidden)])
    return output, hy, cy, _workspace("lstm", input, batch_sizes, hidden, train)


@torch.library.register_fake("fastrnn::lstm_backward")
def _(grad_output, grad_hy, grad_cy, input, hx, cx, w_ih, w_hh, w_hr, output, workspace, batch_sizes,
      reverse, input_grad):
    _check_same_kind("lstm_backward", input, w_hr=w_hr, w_ih=w_ih, w_hh=w_hh, hx=hx, cx=cx)
    gates = w_ih.shape[0]
    return (
        _grad_input_like(input, input_grad),
        torch.empty_like(hx) if hx is not None else w_ih.new_empty((0,)),
        torch.empty_like(cx) if cx is not None else w_ih.new_empty((0,)),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        w_ih.new_empty((gates,)),
        w_ih.new_empty((gates,)),
        torch.empty_like(w_hr) if w_hr is not None else w_ih.new_empty((0,)),
    )


@torch.library.register_fake("fastrnn::gru_forward")
def _(input, hx, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, train):
    _check_same_kind("gru_forward", input, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, hx=hx)
    hidden = w_hh.shape[1]
    output = input.new_empty(_sequence_shape(input, batch_sizes, hidden))
    (hy,) = _final_states(input, batch_sizes, [(hx, hidden)])
    return output, hy, _workspace("gru", input, batch_sizes, hidden, train)


@torch.library.register_fake("fastrnn::gru_backward")
def _(grad_output, grad_hy, input, hx, w_ih, w_hh, output, workspace, batch_sizes, reverse, input_grad):
    _check_same_kind("gru_backward", input, w_ih=w_ih, w_hh=w_hh, hx=hx)
    return _single_state_backward_fake(input, hx, w_ih, w_hh, input_grad)
