"""fastrnn: fused CPU and CUDA kernels for RNN, LSTM and GRU behind drop-in torch.nn modules.

    import fastrnn
    lstm = fastrnn.LSTM(256, 512, num_layers=2)   # instead of torch.nn.LSTM(...)
    lstm.load_state_dict(torch_lstm.state_dict())  # same parameters, same names
    model = fastrnn.convert(model)                 # or swap every RNN module of a model at once

The ops behind the modules are registered as ``torch.ops.fastrnn.*`` (one call per layer and
direction over the whole sequence); ``fastrnn.functional`` runs them on explicit weights.
"""

import torch as _torch

from fastrnn import _ops  # noqa: F401  (loads the extension, registers ops, fakes and autograd)
from fastrnn import _C  # after _ops, which loads torch's libraries first
from fastrnn import _onnx
from fastrnn import functional
from fastrnn.cells import GRUCell, LSTMCell, RNNCell, RNNCellBase
from fastrnn.convert import convert, to_torch
from fastrnn.modules import GRU, LSTM, RNN, RNNBase

__version__ = "0.1.0"

# Whole-model checkpoints (torch.save(model)) that hold fastrnn's modules load with torch.load's
# default weights_only=True wherever the same model with torch.nn's would (a user's own classes
# and torch.nn's still need torch.serialization.add_safe_globals, as always): fastrnn's classes
# hold only parameters, numbers, strings and lists of names. The loading process must import
# fastrnn first, which registers them.
_torch.serialization.add_safe_globals([RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell])

# torch.onnx.export(dynamo=True) exports fastrnn's ops as ONNX's LSTM, GRU and RNN (fastrnn/_onnx.py).
_onnx.install()


def empty_cache() -> int:
    """Frees the CPU memory blocks fastrnn keeps for reuse and returns their size in bytes.

    fastrnn's CPU outputs, workspaces, gradients and scratch of 1 MB or more come from blocks
    it keeps after use (at most 1 GiB of free ones), so that the next call of the same shapes
    does not page-fault fresh memory in; like torch.cuda.empty_cache(), this hands the free ones
    back. Blocks still referenced by tensors are untouched."""
    return _C.empty_cache()


__all__ = ["RNN", "LSTM", "GRU", "RNNBase", "RNNCell", "LSTMCell", "GRUCell", "RNNCellBase",
           "convert", "to_torch", "functional", "empty_cache", "__version__"]
