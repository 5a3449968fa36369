"""fastrnn: fused CPU and CUDA kernels for RNN, LSTM and GRU behind drop-in torch.nn modules.

    import fastrnn
    lstm = fastrnn.LSTM(256, 512, num_layers=2)   # instead of torch.nn.LSTM(...)
    lstm.load_state_dict(torch_lstm.state_dict())  # same parameters, same names
    model = fastrnn.convert(model)                 # or swap every RNN module of a model at once

The ops behind the modules are registered as ``torch.ops.fastrnn.*`` (one call per layer and
direction over the whole sequence); ``fastrnn.functional`` runs them on explicit weights.
"""

from fastrnn import _ops  # noqa: F401  (loads the extension, registers ops, fakes and autograd)
from fastrnn import functional
from fastrnn.cells import GRUCell, LSTMCell, RNNCell, RNNCellBase
from fastrnn.convert import convert, to_torch
from fastrnn.modules import GRU, LSTM, RNN, RNNBase

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNBase", "RNNCell", "LSTMCell", "GRUCell", "RNNCellBase",
           "convert", "to_torch", "functional", "__version__"]
