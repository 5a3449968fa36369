"""Swap torch.nn's recurrent modules for fastrnn's inside a model, and back.

    model = fastrnn.convert(model)     # every nn.RNN/LSTM/GRU/RNNCell/LSTMCell/GRUCell -> fastrnn
    model = fastrnn.to_torch(model)    # and back

The swap is recursive and in place: each module is replaced in its parent by its twin, built with
the same hyperparameters and holding the *same* Parameter objects (so an optimizer created before
the swap still updates them), with the same device, dtype, training mode, hooks and weight
parametrizations. Only exact instances of the six classes are swapped: a user subclass may
override forward, and is left alone. The model is returned; when the model itself is one of the
six classes, the twin is returned (a module cannot replace itself in place).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

from torch import nn
from torch.nn.utils import parametrize

from fastrnn.cells import GRUCell, LSTMCell, RNNCell
from fastrnn.modules import GRU, LSTM, RNN

__all__ = ["convert", "to_torch"]

_TORCH_TO_FAST: dict[type[nn.Module], type[nn.Module]] = {
    nn.RNN: RNN, nn.LSTM: LSTM, nn.GRU: GRU,
    nn.RNNCell: RNNCell, nn.LSTMCell: LSTMCell, nn.GRUCell: GRUCell,
}
_FAST_TO_TORCH = {fast: torch_cls for torch_cls, fast in _TORCH_TO_FAST.items()}

_LAYER_ARGS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
               "bidirectional")
_CELL_ARGS = ("input_size", "hidden_size", "bias")
_HOOKS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
          "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
          "_backward_pre_hooks", "_state_dict_hooks", "_state_dict_pre_hooks",
          "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")


def _plain_class(module: nn.Module) -> type[nn.Module]:
    """The module's class, seen through the subclass that parametrization creates."""
    cls = type(module)
    return cls.__bases__[0] if parametrize.is_parametrized(module) else cls


def _constructor_kwargs(module: nn.Module, cls: type[nn.Module]) -> dict:
    is_layer = cls in (nn.RNN, nn.LSTM, nn.GRU, RNN, LSTM, GRU)
    kwargs = {name: getattr(module, name) for name in (_LAYER_ARGS if is_layer else _CELL_ARGS)}
    if cls in (nn.LSTM, LSTM):
        kwargs["proj_size"] = module.proj_size
    if cls in (nn.RNN, RNN, nn.RNNCell, RNNCell):
        kwargs["nonlinearity"] = module.nonlinearity
    return kwargs


def _twin(module: nn.Module, target: type[nn.Module]) -> nn.Module:
    for option in ("weight_dropout", "variational_dropout"):
        if getattr(module, option, 0) and target in (nn.RNN, nn.LSTM, nn.GRU):
            raise ValueError(f"fastrnn.to_torch: {type(module).__name__} has {option}="
                             f"{getattr(module, option)}, which torch.nn's "
                             f"{target.__name__} has no option for; set it to 0 first")
    # Built on the meta device (no memory, no initialisation draws), then given the originals;
    # the constructor's dropout warning was already shown for the original module.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = target(**_constructor_kwargs(module, _plain_class(module)), device="meta")
    parametrizations = getattr(module, "parametrizations", {}) if parametrize.is_parametrized(module) else {}
    for name, _ in list(twin.named_parameters(recurse=False)):
        if name not in parametrizations:
            setattr(twin, name, module._parameters[name])
    for name, chain in parametrizations.items():
        # Register the same parametrization objects on the twin, starting from the current
        # (parametrized) value, then hand it the original tensors themselves.
        setattr(twin, name, nn.Parameter(getattr(module, name).detach().clone()))
        for parametrization in chain:
            parametrize.register_parametrization(twin, name, parametrization, unsafe=True)
        for key, original in chain.named_parameters(recurse=False):
            setattr(twin.parametrizations[name], key, original)
    for name, buffer in module.named_buffers(recurse=False):
        twin.register_buffer(name, buffer, persistent=name not in module._non_persistent_buffers_set)
    for hooks in _HOOKS:
        if hasattr(module, hooks) and hasattr(twin, hooks):
            setattr(twin, hooks, OrderedDict(getattr(module, hooks)))
    twin.train(module.training)
    return twin


def _swap(model: nn.Module, mapping: dict[type[nn.Module], type[nn.Module]]) -> nn.Module:
    target = mapping.get(_plain_class(model))
    if target is not None:
        return _twin(model, target)
    for name, child in list(model.named_children()):
        swapped = _swap(child, mapping)
        if swapped is not child:
            setattr(model, name, swapped)
    return model


def convert(model: nn.Module) -> nn.Module:
    """Replaces every torch.nn RNN, LSTM, GRU, RNNCell, LSTMCell and GRUCell inside ``model``
    (recursively, in place) by its fastrnn twin holding the same parameters; returns ``model``."""
    return _swap(model, _TORCH_TO_FAST)


def to_torch(model: nn.Module) -> nn.Module:
    """The reverse of :func:`convert`: fastrnn's modules back to torch.nn's, same parameters."""
    model = _swap(model, _FAST_TO_TORCH)
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            module.flatten_parameters()
    return model
