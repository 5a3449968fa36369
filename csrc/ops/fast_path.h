// The modules' inference fast path (fast_path.cpp), bound in module.cpp as
// fastrnn._C.forward_fast and called by fastrnn.modules.RNNBase.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

namespace fastrnn::ops {

// A whole stack (every layer and direction) on CPU without autograd, or None when the call
// needs the regular path. `cell_code` is the CellKind (fastrnn._C.cells()'s `code`);
// `hx` None, a tensor, or for the LSTM a tuple (h0, c0); `parameters` the module's _parameters
// and `names` its flat weight names in torch.nn's order. Returns (output, h_n), or for the
// LSTM (output, (h_n, c_n)), as the module's forward does.
pybind11::object forward_fast(int64_t cell_code, pybind11::handle input, pybind11::handle hx,
                              pybind11::handle parameters, pybind11::handle names,
                              int64_t num_layers, bool bidirectional, bool batch_first);

}  // namespace fastrnn::ops
