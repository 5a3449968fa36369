#include "ops/differentiable.h"

#include <optional>
#include <vector>

namespace fastrnn::ops {
namespace {

std::optional<at::Tensor> optional(const at::Tensor& tensor) {
  return tensor.defined() ? std::optional<at::Tensor>(tensor) : std::nullopt;
}

}  // namespace

std::vector<at::Tensor> differentiable_layer(CellKind cell, const at::Tensor& input,
                                             const at::Tensor& hx, const at::Tensor& cx,
                                             const at::Tensor& w_ih, const at::Tensor& w_hh,
                                             const at::Tensor& b_ih, const at::Tensor& b_hh,
                                             const at::Tensor& w_hr,
                                             const at::Tensor& batch_sizes, bool reverse) {
  const bool lstm = cell == CellKind::kLstm;
  const int64_t hidden = w_hh.size(0) / gate_count(cell), output_size = w_hh.size(1);
  // Rows of step t: sizes[t] of them from offsets[t] on, in the [N, I] row layout.
  std::vector<int64_t> sizes;
  at::Tensor rows;
  if (batch_sizes.defined()) {
    const at::Tensor counts = batch_sizes.contiguous();
    sizes.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel());
    rows = input;
  } else {
    sizes.assign(input.size(0), input.size(1));
    rows = input.reshape({input.size(0) * input.size(1), input.size(2)});
  }
  const int64_t steps = static_cast<int64_t>(sizes.size());
  const int64_t batch = batch_sizes.defined() ? sizes.at(0) : input.size(1);
  std::vector<int64_t> offsets(steps + 1, 0);
  for (int64_t t = 0; t < steps; ++t) offsets[t + 1] = offsets[t] + sizes[t];

  at::Tensor h = hx.defined() ? hx : at::zeros({batch, output_size}, input.options());
  at::Tensor c;
  if (lstm) c = cx.defined() ? cx : at::zeros({batch, hidden}, input.options());
  const at::Tensor x_proj = at::linear(rows, w_ih, optional(b_ih));  // [N, G]
  // Rows past sizes[t] keep their state: the new rows over the first sizes[t] of the old.
  auto carry = [&](const at::Tensor& fresh, const at::Tensor& old, int64_t n) {
    return n == old.size(0) ? fresh : at::cat({fresh, old.narrow(0, n, old.size(0) - n)});
  };
  std::vector<at::Tensor> outputs(steps);
  for (int64_t i = 0; i < steps; ++i) {
    const int64_t t = reverse ? steps - 1 - i : i, n = sizes[t];
    const at::Tensor x = x_proj.narrow(0, offsets[t], n), h_prev = h.narrow(0, 0, n);
    const at::Tensor recurrent = at::linear(h_prev, w_hh, optional(b_hh));  // [n, G]
    at::Tensor h_new;
    switch (cell) {
      case CellKind::kRnnTanh: h_new = at::tanh(x + recurrent); break;
      case CellKind::kRnnRelu: h_new = at::relu(x + recurrent); break;
      case CellKind::kLstm: {
        const auto gates = (x + recurrent).chunk(4, 1);  // i f g o
        const at::Tensor c_new = at::sigmoid(gates[1]) * c.narrow(0, 0, n) +
                                 at::sigmoid(gates[0]) * at::tanh(gates[2]);
        h_new = at::sigmoid(gates[3]) * at::tanh(c_new);
        if (w_hr.defined()) h_new = at::linear(h_new, w_hr);
        c = carry(c_new, c, n);
        break;
      }
      case CellKind::kGru: {
        const auto xs = x.chunk(3, 1), hs = recurrent.chunk(3, 1);  // r z n
        const at::Tensor r = at::sigmoid(xs[0] + hs[0]), z = at::sigmoid(xs[1] + hs[1]);
        const at::Tensor candidate = at::tanh(xs[2] + r * hs[2]);
        h_new = at::rsub(z, 1) * candidate + z * h_prev;
        break;
      }
    }
    outputs[t] = h_new;
    h = carry(h_new, h, n);
  }
  at::Tensor output = steps > 0 ? at::cat(outputs) : x_proj.new_zeros({0, output_size});
  if (!batch_sizes.defined()) output = output.reshape({steps, batch, output_size});
  return {output, h, lstm ? c : at::Tensor()};
}

}  // namespace fastrnn::ops
