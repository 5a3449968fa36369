// The op schemas of fastrnn, defined once for every device and written out for each cell of
// fastrnn/cells.h's list. One forward call covers a whole sequence of one layer and one
// direction; the matching backward op takes back what forward saved. For an LSTM:
//   lstm_forward(Tensor input, Tensor? hx, Tensor? cx, Tensor w_ih, Tensor w_hh, Tensor? b_ih,
//       Tensor? b_hh, Tensor? w_hr, Tensor? batch_sizes, bool reverse, bool train)
//       -> (Tensor output, Tensor hy, Tensor cy, Tensor workspace)
//   lstm_backward(Tensor? grad_output, Tensor? grad_hy, Tensor? grad_cy, Tensor input,
//       Tensor? hx, Tensor? cx, Tensor w_ih, Tensor w_hh, Tensor? w_hr, Tensor output,
//       Tensor workspace, Tensor? batch_sizes, bool reverse, bool input_grad)
//       -> (Tensor grad_input, Tensor grad_hx, Tensor grad_cx, Tensor grad_w_ih,
//           Tensor grad_w_hh, Tensor grad_b_ih, Tensor grad_b_hh, Tensor grad_w_hr)
// Cells without a cell state (CellInfo::cell_state) have no cx, cy, grad_cy, grad_cx, and no
// projection (w_hr, grad_w_hr); cells without a workspace (workspace_blocks 0: the vanilla
// RNN) no train flag and no workspace. Shapes (see csrc/include/fastrnn/recurrence.h for the
// letters):
//   input [T, B, I], or [N, I] with batch_sizes [T] (a packed sequence, int64 on the CPU)
//   hx [B, P], cx [B, H]; output [T, B, P] or [N, P]; hy like hx, cy like cx
//   workspace [N, 5H] (LSTM: i f g o | c) or [N, 4H] (GRU: r z n | W_hn h + b_hn); [0] when
//   train=False.
// reverse=True runs the sequence from its end (the second direction of a bidirectional layer).
// hx / cx may be None: zeros (the batch size then comes from input or batch_sizes[0]).
// Backward ops take None for the gradient of an output that did not reach the loss (zeros) and
// return every gradient: grad_input only when input_grad, grad_hx / grad_cx only when forward had
// hx / cx, grad_w_hr only with w_hr (else an empty [0] tensor), and bias gradients even for a
// layer without bias (the caller drops them). tests/test_ops.py pins every schema's text.
#include <torch/library.h>

#include <string>

#include "fastrnn/cells.h"

namespace {

// `text` when `present`, else nothing.
std::string when(bool present, const char* text) { return present ? text : ""; }

std::string forward_schema(const fastrnn::CellInfo& c) {
  const bool cs = c.cell_state, ws = c.workspace_blocks > 0;
  return std::string(c.name) + "_forward(Tensor input, Tensor? hx, " + when(cs, "Tensor? cx, ") +
         "Tensor w_ih, Tensor w_hh, Tensor? b_ih, Tensor? b_hh, " + when(cs, "Tensor? w_hr, ") +
         "Tensor? batch_sizes, bool reverse" + when(ws, ", bool train") +
         ") -> (Tensor output, Tensor hy" + when(cs, ", Tensor cy") +
         when(ws, ", Tensor workspace") + ")";
}

std::string backward_schema(const fastrnn::CellInfo& c) {
  const bool cs = c.cell_state, ws = c.workspace_blocks > 0;
  return std::string(c.name) + "_backward(Tensor? grad_output, Tensor? grad_hy, " +
         when(cs, "Tensor? grad_cy, ") + "Tensor input, Tensor? hx, " +
         when(cs, "Tensor? cx, ") + "Tensor w_ih, Tensor w_hh, " + when(cs, "Tensor? w_hr, ") +
         "Tensor output, " + when(ws, "Tensor workspace, ") +
         "Tensor? batch_sizes, bool reverse, bool input_grad) -> (Tensor grad_input, "
         "Tensor grad_hx, " +
         when(cs, "Tensor grad_cx, ") +
         "Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_b_ih, Tensor grad_b_hh" +
         when(cs, ", Tensor grad_w_hr") + ")";
}

}  // namespace

TORCH_LIBRARY(fastrnn, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  for (const fastrnn::CellInfo& cell : fastrnn::kCells) {
    m.def(forward_schema(cell).c_str(), tags);
    m.def(backward_schema(cell).c_str(), tags);
  }
}
