// The op schemas of fastrnn, defined once for every device. One forward call covers a whole
// sequence of one layer and one direction; the matching backward op takes back what forward
// saved. Shapes (see csrc/include/fastrnn/recurrence.h for the letters):
//   input [T, B, I], or [N, I] with batch_sizes [T] (a packed sequence, int64 on the CPU)
//   hx [B, P], cx [B, H]; output [T, B, P] or [N, P]; hy like hx, cy like cx
//   workspace [N, 5H] (LSTM: i f g o | c) or [N, 4H] (GRU: r z n | W_hn h + b_hn); [0] when
//   train=False. The vanilla RNN saves nothing but its output.
// reverse=True runs the sequence from its end (the second direction of a bidirectional layer).
// hx / cx may be None: zeros (the batch size then comes from input or batch_sizes[0]).
// Backward ops take None for the gradient of an output that did not reach the loss (zeros) and
// return every gradient: grad_input only when input_grad, grad_hx / grad_cx only when forward had
// hx / cx, grad_w_hr only with w_hr (else an empty [0] tensor), and bias gradients even for a
// layer without bias (the caller drops them).
#include <torch/library.h>

TORCH_LIBRARY(fastrnn, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  m.def(
      "rnn_tanh_forward(Tensor input, Tensor? hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, Tensor? batch_sizes, bool reverse) -> (Tensor output, Tensor hy)",
      tags);
  m.def(
      "rnn_tanh_backward(Tensor? grad_output, Tensor? grad_hy, Tensor input, Tensor? hx, "
      "Tensor w_ih, Tensor w_hh, Tensor output, Tensor? batch_sizes, bool reverse, "
      "bool input_grad) -> (Tensor grad_input, Tensor grad_hx, Tensor grad_w_ih, "
      "Tensor grad_w_hh, Tensor grad_b_ih, Tensor grad_b_hh)",
      tags);
  m.def(
      "rnn_relu_forward(Tensor input, Tensor? hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, Tensor? batch_sizes, bool reverse) -> (Tensor output, Tensor hy)",
      tags);
  m.def(
      "rnn_relu_backward(Tensor? grad_output, Tensor? grad_hy, Tensor input, Tensor? hx, "
      "Tensor w_ih, Tensor w_hh, Tensor output, Tensor? batch_sizes, bool reverse, "
      "bool input_grad) -> (Tensor grad_input, Tensor grad_hx, Tensor grad_w_ih, "
      "Tensor grad_w_hh, Tensor grad_b_ih, Tensor grad_b_hh)",
      tags);
  m.def(
      "lstm_forward(Tensor input, Tensor? hx, Tensor? cx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, Tensor? w_hr, Tensor? batch_sizes, bool reverse, bool train) -> "
      "(Tensor output, Tensor hy, Tensor cy, Tensor workspace)",
      tags);
  m.def(
      "lstm_backward(Tensor? grad_output, Tensor? grad_hy, Tensor? grad_cy, Tensor input, "
      "Tensor? hx, Tensor? cx, Tensor w_ih, Tensor w_hh, Tensor? w_hr, Tensor output, "
      "Tensor workspace, Tensor? batch_sizes, bool reverse, bool input_grad) -> "
      "(Tensor grad_input, Tensor grad_hx, Tensor grad_cx, Tensor grad_w_ih, Tensor grad_w_hh, "
      "Tensor grad_b_ih, Tensor grad_b_hh, Tensor grad_w_hr)",
      tags);
  m.def(
      "gru_forward(Tensor input, Tensor? hx, Tensor w_ih, Tensor w_hh, Tensor? b_ih, "
      "Tensor? b_hh, Tensor? batch_sizes, bool reverse, bool train) -> "
      "(Tensor output, Tensor hy, Tensor workspace)",
      tags);
  m.def(
      "gru_backward(Tensor? grad_output, Tensor? grad_hy, Tensor input, Tensor? hx, Tensor w_ih, "
      "Tensor w_hh, Tensor output, Tensor workspace, Tensor? batch_sizes, bool reverse, "
      "bool input_grad) -> (Tensor grad_input, Tensor grad_hx, Tensor grad_w_ih, "
      "Tensor grad_w_hh, Tensor grad_b_ih, Tensor grad_b_hh)",
      tags);
}
