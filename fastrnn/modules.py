"""Drop-in replacements for torch.nn.RNN, LSTM and GRU.

Same constructor signatures, parameter names, shapes, order and initialisation, same forward
inputs and outputs (padded, batch_first, unbatched, PackedSequence), same errors and repr as
torch.nn, so a ``state_dict`` moves between the two with no conversion. The classes subclass
``nn.Module`` rather than ``nn.RNNBase``: torch.compile would otherwise treat them as torch.nn
RNNs (and graph-break on them) instead of tracing fastrnn's ops. (About 470 lines in one file:
most of it is torch.nn's constructor checks, overloads and docstrings, which the three classes
share through RNNBase.)
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, overload

import torch
from torch import Tensor, nn
from torch.nn import init
from torch.nn.parameter import Parameter
from torch.nn.utils.rnn import PackedSequence

from fastrnn import _C, _ops, functional

__all__ = ["RNNBase", "RNN", "LSTM", "GRU"]

# The extension's cells (fastrnn._ops.CELLS) by torch.nn's mode string: "LSTM", "RNN_TANH", ...
_CELLS = {name.upper(): cell for name, cell in _ops.CELLS.items()}


def _unscriptable(name: str) -> RuntimeError:
    """What torch.jit.script of a fastrnn module or cell raises (torch calls the modules'
    __prepare_scriptable__ first, also on submodules): their forward is Python that TorchScript
    cannot compile, and torch 2.13's own scripted RNNs cannot be called either."""
    return RuntimeError(
        f"fastrnn.{name} cannot be compiled by torch.jit.script. torch.jit.trace it instead (the "
        f"traced graph calls fastrnn's ops), or use torch.export or torch.compile")


def _warn_if_quantizing(module: nn.Module, name: str) -> None:
    """torch.ao.quantization's eager flow (quantize_dynamic, prepare) sets ``qconfig`` on every
    module of the model, then swaps only the classes its mappings know: torch.nn's RNNs, never
    fastrnn's, which would stay float without a word."""
    if name == "qconfig":
        cls = type(module).__name__
        warnings.warn(
            f"torch.ao.quantization does not quantize fastrnn.{cls} (its mappings know "
            f"torch.nn.{cls}): it stays float. To quantize it, convert the model back first: "
            f"model = fastrnn.to_torch(model)", stacklevel=3)


def _apply_permutation(tensor: Tensor, permutation: Tensor, dim: int = 1) -> Tensor:
    return tensor.index_select(dim, permutation)


class RNNBase(nn.Module):
    """Base of fastrnn's RNN, LSTM and GRU: torch.nn.RNNBase's parameters and checks.

    Beyond torch.nn, two keyword-only options of every module, used in training mode only
    (fastrnn.functional describes them): ``weight_dropout`` (DropConnect on each W_hh, one mask
    per forward call) and ``variational_dropout`` (one mask per sequence and input unit on every
    layer's input, the same at every step). Both default to 0 (off); neither changes the
    parameters or the state_dict.
    """

    __constants__ = ["mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first",
                     "dropout", "bidirectional", "proj_size", "weight_dropout",
                     "variational_dropout"]

    mode: str
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    proj_size: int
    # Class defaults as well, so modules pickled before these options existed still load.
    weight_dropout: float = 0.0
    variational_dropout: float = 0.0

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device: Any = None,
                 dtype: Any = None, *, weight_dropout: float = 0.0,
                 variational_dropout: float = 0.0) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        num_directions = 2 if bidirectional else 1

        # torch.nn's checks, in its order and with its messages.
        if (not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1
                or isinstance(dropout, bool)):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=2)
        if not isinstance(bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
        if not isinstance(input_size, int):
            raise TypeError(f"input_size should be of type int, got: {type(input_size).__name__}")
        if input_size <= 0:
            raise ValueError("input_size must be greater than zero")
        if not isinstance(hidden_size, int):
            raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if mode not in _CELLS:
            raise ValueError("Unrecognized RNN mode: " + mode)
        for name, p in (("weight_dropout", weight_dropout),
                        ("variational_dropout", variational_dropout)):
            if not isinstance(p, numbers.Number) or isinstance(p, bool) or not 0 <= p <= 1:
                raise ValueError(f"{name} should be a number in range [0, 1] representing the "
                                 "probability of an element being zeroed")
        self.weight_dropout = float(weight_dropout)
        self.variational_dropout = float(variational_dropout)
        gate_size = _CELLS[mode]["gates"] * hidden_size

        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        real_hidden_size = proj_size if proj_size > 0 else hidden_size
        for layer in range(num_layers):
            for direction in range(num_directions):
                layer_input_size = input_size if layer == 0 else real_hidden_size * num_directions
                suffix = "_reverse" if direction == 1 else ""
                shapes = [("weight_ih_l{}{}", (gate_size, layer_input_size)),
                          ("weight_hh_l{}{}", (gate_size, real_hidden_size))]
                if bias:
                    shapes += [("bias_ih_l{}{}", (gate_size,)), ("bias_hh_l{}{}", (gate_size,))]
                if proj_size > 0:
                    shapes += [("weight_hr_l{}{}", (proj_size, hidden_size))]
                names = []
                for pattern, shape in shapes:
                    name = pattern.format(layer, suffix)
                    setattr(self, name, Parameter(torch.empty(shape, **factory_kwargs)))
                    names.append(name)
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    # ---- torch.nn.RNNBase's surface ----

    @property
    def _flat_weights(self) -> list[Tensor | None]:
        # Looked up on every access, so torch.func.functional_call, parametrizations and
        # reassigned parameters are always seen (torch.nn caches these and tracks changes).
        return [getattr(self, name) if hasattr(self, name) else None
                for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Parameter]]:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def __prepare_scriptable__(self) -> RNNBase:
        raise _unscriptable(type(self).__name__)

    def __setattr__(self, name: str, value: Any) -> None:
        _warn_if_quantizing(self, name)
        super().__setattr__(name, value)

    def flatten_parameters(self) -> None:
        """A no-op: fastrnn's kernels take the parameters as they are (kept for torch.nn code)."""

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def check_input(self, input: Tensor, batch_sizes: Tensor | None) -> None:
        weight_dtype = self._flat_weights[0].dtype  # type: ignore[union-attr]
        if input.dtype != weight_dtype and not torch._C._is_any_autocast_enabled():
            raise ValueError(
                f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight_dtype}). "
                f"Convert input: input.to({weight_dtype}), or convert model: model.to({input.dtype})")
        expected_input_dim = 2 if batch_sizes is not None else 3
        if input.dim() != expected_input_dim:
            raise RuntimeError(
                f"input must have {expected_input_dim} dimensions, got {input.dim()}")
        if self.input_size != input.size(-1):
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                f"got {input.size(-1)}")

    def get_expected_hidden_size(self, input: Tensor,
                                 batch_sizes: Tensor | None) -> tuple[int, int, int]:
        mini_batch = self._mini_batch(input, batch_sizes)
        num_directions = 2 if self.bidirectional else 1
        size = self.proj_size if self.proj_size > 0 else self.hidden_size
        return (self.num_layers * num_directions, mini_batch, size)

    def check_hidden_size(self, hx: Tensor, expected_hidden_size: tuple[int, int, int],
                          msg: str = "Expected hidden size {}, got {}") -> None:
        if hx.size() != expected_hidden_size:
            raise RuntimeError(msg.format(expected_hidden_size, list(hx.size())))

    def check_forward_args(self, input: Tensor, hidden: Tensor,
                           batch_sizes: Tensor | None) -> None:
        self.check_input(input, batch_sizes)
        self.check_hidden_size(hidden, self.get_expected_hidden_size(input, batch_sizes))

    def permute_hidden(self, hx: Tensor, permutation: Tensor | None) -> Tensor:
        if permutation is None:
            return hx
        return _apply_permutation(hx, permutation)

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.proj_size != 0:
            s += ", proj_size={proj_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        if self.weight_dropout != 0:
            s += f", weight_dropout={self.weight_dropout}"
        if self.variational_dropout != 0:
            s += f", variational_dropout={self.variational_dropout}"
        return s.format(**self.__dict__)

    # ---- shared forward plumbing ----

    def _forward_fast(self, input: Any, hx: Any) -> Any:
        """The whole call through ``fastrnn._C.forward_fast``, or None for the regular path.

        The fast path (csrc/ops/fast_path.cpp) runs every layer and direction from C++ with no
        dispatcher, autograd wrapper or Python per layer, and takes only calls whose result it
        cannot change: CPU inference on plain tensors of the shapes torch.nn accepts (anything
        else returns None, and the regular path below runs, with torch.nn's checks and errors).
        Dropout of any kind in training and torch.compile always take the regular path.
        """
        if self.training and (self.dropout > 0 and self.num_layers > 1 or self.weight_dropout > 0
                              or self.variational_dropout > 0):
            return None
        if torch.compiler.is_compiling():
            return None
        return _C.forward_fast(_CELLS[self.mode]["code"], input, hx, self._parameters,
                               self._flat_weights_names, self.num_layers, self.bidirectional,
                               self.batch_first)

    def _mini_batch(self, input: Tensor, batch_sizes: Tensor | None) -> int:
        if batch_sizes is not None:
            return int(batch_sizes[0])
        return input.size(0) if self.batch_first else input.size(1)

    def _run(self, input: Tensor, hx: Tensor | None, cx: Tensor | None,
             batch_sizes: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        return functional._stack(
            _CELLS[self.mode]["name"], input, hx, cx, self._flat_weights,  # type: ignore[arg-type]
            self.bias, self.num_layers, self.dropout, self.training, self.bidirectional,
            self.batch_first, batch_sizes, weight_dropout=self.weight_dropout,
            variational_dropout=self.variational_dropout)

    def _forward_states(self, input: Tensor | PackedSequence, states: list[Tensor] | None,
                        state_sizes: list[int], dim_message: str
                        ) -> tuple[Tensor | PackedSequence, list[Tensor]]:
        """The forward of all three modules, over a list of state tensors (LSTM: h and c), with
        torch.nn's checks and messages and its handling of packed and unbatched input."""
        orig_input = input
        lstm = len(state_sizes) == 2
        if isinstance(orig_input, PackedSequence):
            input, batch_sizes, sorted_indices, unsorted_indices = orig_input
            if states is not None and sorted_indices is not None:
                states = [_apply_permutation(state, sorted_indices) for state in states]
            is_batched, batch_dim = True, 1
        else:
            batch_sizes = sorted_indices = unsorted_indices = None
            if input.dim() not in (2, 3):
                raise ValueError(dim_message.format(dim=input.dim()))
            is_batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            if not is_batched:
                input = input.unsqueeze(batch_dim)
            if states is not None:
                rank = 3 if is_batched else 2
                if any(state.dim() != rank for state in states):
                    kind = "batched 3-D" if is_batched else "unbatched 2-D"
                    if lstm:
                        raise RuntimeError(
                            f"For {kind} input, hx and cx should also be {rank}-D but got "
                            f"({states[0].dim()}-D, {states[1].dim()}-D) tensors")
                    raise RuntimeError(f"For {kind} input, hx should also be {rank}-D but got "
                                       f"{states[0].dim()}-D tensor")
                if not is_batched:
                    states = [state.unsqueeze(1) for state in states]
        if states is None:
            # No initial state: the ops start from zeros of the right shape, so only the input
            # needs checking (and a packed batch never has to be read: torch.compile-friendly).
            self.check_input(input, batch_sizes)
        elif batch_sizes is not None and torch.compiler.is_compiling():
            # batch_sizes[0] is data that tracing cannot read; the ops check the states' shapes.
            self.check_input(input, batch_sizes)
        else:
            self.check_forward_args(input, tuple(states) if lstm else states[0], batch_sizes)
        h0 = states[0] if states is not None else None
        c0 = states[1] if states is not None and lstm else None
        output, h_n, c_n = self._run(input, h0, c0, batch_sizes)
        finals = [h_n, c_n] if lstm else [h_n]
        if isinstance(orig_input, PackedSequence):
            if unsorted_indices is not None:
                finals = [_apply_permutation(final, unsorted_indices) for final in finals]
            return PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices), finals
        if not is_batched:
            output = output.squeeze(batch_dim)
            finals = [final.squeeze(1) for final in finals]
        return output, finals


class RNN(RNNBase):
    """Drop-in for :class:`torch.nn.RNN`: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``
    with act = tanh or relu, run by fastrnn's fused kernels.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)``; see
    torch.nn.RNN for the arguments, inputs and outputs, which are the same. Keyword-only
    ``weight_dropout`` and ``variational_dropout``: see RNNBase.
    """

    # torch.nn.RNN's two signatures (for type checkers); the implementation takes *args so that
    # bad arguments raise torch.nn's errors, not Python's.
    @overload
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device: Any = None,
                 dtype: Any = None, *, weight_dropout: float = 0.0,
                 variational_dropout: float = 0.0) -> None: ...

    @overload
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            self.nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if self.nonlinearity == "tanh":
            mode = "RNN_TANH"
        elif self.nonlinearity == "relu":
            mode = "RNN_RELU"
        else:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(mode, *args, **kwargs)

    def forward(self, input: Tensor | PackedSequence,
                hx: Tensor | None = None) -> tuple[Tensor | PackedSequence, Tensor]:
        fast = self._forward_fast(input, hx)
        if fast is not None:
            return fast
        output, (h_n,) = self._forward_states(
            input, None if hx is None else [hx], [self.hidden_size],
            "RNN: Expected input to be 2D or 3D, got {dim}D tensor instead")
        return output, h_n


class GRU(RNNBase):
    """Drop-in for :class:`torch.nn.GRU` (gate order r, z, n; ``n = tanh(W_in x + b_in +
    r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``), run by fastrnn's fused kernels.

    ``GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, device=None, dtype=None)``; see torch.nn.GRU. Keyword-only
    ``weight_dropout`` and ``variational_dropout``: see RNNBase.
    """

    @overload
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device: Any = None,
                 dtype: Any = None, *, weight_dropout: float = 0.0,
                 variational_dropout: float = 0.0) -> None: ...

    @overload
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)

    def forward(self, input: Tensor | PackedSequence,
                hx: Tensor | None = None) -> tuple[Tensor | PackedSequence, Tensor]:
        fast = self._forward_fast(input, hx)
        if fast is not None:
            return fast
        output, (h_n,) = self._forward_states(
            input, None if hx is None else [hx], [self.hidden_size],
            "GRU: Expected input to be 2D or 3D, got {dim}D instead")
        return output, h_n


class LSTM(RNNBase):
    """Drop-in for :class:`torch.nn.LSTM` (gate order i, f, g, o; optional projection
    ``proj_size``), run by fastrnn's fused kernels.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, proj_size=0, device=None, dtype=None)``; see torch.nn.LSTM.
    Keyword-only ``weight_dropout`` and ``variational_dropout``: see RNNBase.
    """

    @overload
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0,
                 device: Any = None, dtype: Any = None, *, weight_dropout: float = 0.0,
                 variational_dropout: float = 0.0) -> None: ...

    @overload
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__("LSTM", *args, **kwargs)

    def get_expected_cell_size(self, input: Tensor,
                               batch_sizes: Tensor | None) -> tuple[int, int, int]:
        num_directions = 2 if self.bidirectional else 1
        return (self.num_layers * num_directions, self._mini_batch(input, batch_sizes),
                self.hidden_size)

    def check_forward_args(self, input: Tensor, hidden: tuple[Tensor, Tensor],  # type: ignore[override]
                           batch_sizes: Tensor | None) -> None:
        self.check_input(input, batch_sizes)
        self.check_hidden_size(hidden[0], self.get_expected_hidden_size(input, batch_sizes),
                               "Expected hidden[0] size {}, got {}")
        self.check_hidden_size(hidden[1], self.get_expected_cell_size(input, batch_sizes),
                               "Expected hidden[1] size {}, got {}")

    def permute_hidden(self, hx: tuple[Tensor, Tensor],  # type: ignore[override]
                       permutation: Tensor | None) -> tuple[Tensor, Tensor]:
        if permutation is None:
            return hx
        return _apply_permutation(hx[0], permutation), _apply_permutation(hx[1], permutation)

    def forward(self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor | PackedSequence, tuple[Tensor, Tensor]]:
        fast = self._forward_fast(input, hx)
        if fast is not None:
            return fast
        real_hidden_size = self.proj_size if self.proj_size > 0 else self.hidden_size
        output, (h_n, c_n) = self._forward_states(
            input, None if hx is None else [hx[0], hx[1]], [real_hidden_size, self.hidden_size],
            "LSTM: Expected input to be 2D or 3D, got {dim}D instead")
        return output, (h_n, c_n)
