// The list of fastrnn's recurrent cells: what every layer outside the kernels knows about a cell
// (its op names, gate count, the per-row layout of what its forward pass saves for backward, the
// states it carries). Torch-free: shared by the CPU driver, the op glue and the CUDA kernels.
// The op glue expands the list where registration needs it (visit_cell below), and Python reads
// it from the extension (fastrnn._C.cells(), used by fastrnn/_ops.py, modules.py, functional.py),
// so a new cell is one more entry here plus its definition.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace fastrnn {

enum class CellKind { kRnnTanh, kRnnRelu, kLstm, kGru };

struct CellInfo {
  CellKind kind;
  const char* name;         // torch.nn's mode in lower case; the ops are fastrnn::<name>_forward
                            // and fastrnn::<name>_backward
  const char* forward_op;
  const char* backward_op;
  int64_t gates;            // gate blocks of size hidden in W_ih / W_hh rows (LSTM i f g o,
                            // GRU r z n, RNN one)
  // Columns of one row of the training workspace, per unit of hidden size (0: the op has no
  // workspace and no `train` flag; backward needs only the output):
  //   LSTM [i f g o | c]   activated gates and the new cell state c_t
  //   GRU  [r z n | h_n]   activated gates and h_n = W_hn h_{t-1} + b_hn
  int64_t workspace_blocks;
  bool cell_state;          // carries a cell state c beside h (cx, cy, grad_cx) and may have a
                            // projection (w_hr, proj_size)
};

inline constexpr CellInfo kCells[] = {
    {CellKind::kRnnTanh, "rnn_tanh", "fastrnn::rnn_tanh_forward", "fastrnn::rnn_tanh_backward",
     1, 0, false},
    {CellKind::kRnnRelu, "rnn_relu", "fastrnn::rnn_relu_forward", "fastrnn::rnn_relu_backward",
     1, 0, false},
    {CellKind::kLstm, "lstm", "fastrnn::lstm_forward", "fastrnn::lstm_backward", 4, 5, true},
    {CellKind::kGru, "gru", "fastrnn::gru_forward", "fastrnn::gru_backward", 3, 4, false},
};
inline constexpr std::size_t kCellCount = sizeof(kCells) / sizeof(kCells[0]);

namespace detail {
constexpr bool cells_in_enum_order() {
  for (std::size_t i = 0; i < kCellCount; ++i) {
    if (static_cast<std::size_t>(kCells[i].kind) != i) return false;
  }
  return true;
}
}  // namespace detail
static_assert(detail::cells_in_enum_order(), "kCells lists the cells in CellKind's order");

constexpr const CellInfo& cell_info(CellKind cell) {
  return kCells[static_cast<std::size_t>(cell)];
}
constexpr int64_t gate_count(CellKind cell) { return cell_info(cell).gates; }
constexpr int64_t workspace_blocks(CellKind cell) { return cell_info(cell).workspace_blocks; }

template <CellKind kCell>
using CellConstant = std::integral_constant<CellKind, kCell>;

// f(CellConstant<cell>{}): a run-time cell as a compile-time one, for the templates that are
// instantiated per cell. Every cell's call must return the same type.
template <std::size_t kIndex = 0, class F>
decltype(auto) visit_cell(CellKind cell, F&& f) {
  if constexpr (kIndex + 1 < kCellCount) {
    if (cell != kCells[kIndex].kind) return visit_cell<kIndex + 1>(cell, std::forward<F>(f));
  }
  return std::forward<F>(f)(CellConstant<kCells[kIndex].kind>{});
}

namespace detail {
template <class F, std::size_t... kIndex>
void for_each_cell(F& f, std::index_sequence<kIndex...>) {
  (f(CellConstant<kCells[kIndex].kind>{}), ...);
}
}  // namespace detail

// f(CellConstant<cell>{}) for every cell of kCells, in order.
template <class F>
void for_each_cell(F&& f) {
  detail::for_each_cell(f, std::make_index_sequence<kCellCount>{});
}

}  // namespace fastrnn
