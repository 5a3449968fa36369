// The four recurrent cells and the per-row layout of what their forward pass saves for backward.
// Torch-free: shared by the CPU driver, the op glue and the CUDA kernels. fastrnn/_ops.py repeats
// the workspace widths for the fake (meta) kernels; tests/test_ops.py checks that they agree.
#pragma once

#include <cstdint>

namespace fastrnn {

enum class CellKind { kRnnTanh, kRnnRelu, kLstm, kGru };

// Gate blocks of size hidden in W_ih / W_hh rows: LSTM i f g o, GRU r z n, RNN one.
constexpr int64_t gate_count(CellKind cell) {
  return cell == CellKind::kLstm ? 4 : cell == CellKind::kGru ? 3 : 1;
}

// Columns of one row of the training workspace, per unit of hidden size:
//   LSTM [i f g o | c]   activated gates and the new cell state c_t
//   GRU  [r z n | h_n]   activated gates and h_n = W_hn h_{t-1} + b_hn
//   RNN  nothing         (backward needs only the output h_t)
constexpr int64_t workspace_blocks(CellKind cell) {
  return cell == CellKind::kLstm ? 5 : cell == CellKind::kGru ? 4 : 0;
}

}  // namespace fastrnn
