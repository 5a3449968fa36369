#include "ops/layer_args.h"

namespace fastrnn::ops {
namespace {

void check_same_kind(const char* op, const char* name, const at::Tensor& tensor,
                     const at::Tensor& input) {
  TORCH_CHECK(tensor.scalar_type() == input.scalar_type(), op, ": ", name, " has dtype ",
              tensor.scalar_type(), " but input has dtype ", input.scalar_type(),
              "; all tensors must have the same dtype");
  TORCH_CHECK(tensor.device() == input.device(), op, ": ", name, " is on ", tensor.device(),
              " but input is on ", input.device(), "; all tensors must be on the same device");
}

void check_shape(const char* op, const char* name, const at::Tensor& tensor,
                 at::IntArrayRef expected) {
  TORCH_CHECK(tensor.sizes() == expected, op, ": expected ", name, " of shape ", expected,
              ", got ", tensor.sizes());
}

}  // namespace

LayerSizes check_layer(const char* op, CellKind cell, const LayerTensors& t) {
  LayerSizes s;
  const at::Tensor& input = t.input;
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), op,
              ": expected a floating-point input, got ", input.scalar_type());
  s.packed = t.batch_sizes.has_value();
  if (s.packed) {
    TORCH_CHECK(input.dim() == 2, op,
                ": with batch_sizes (a packed sequence) input must be 2-D [rows, input_size], got ",
                input.dim(), "-D");
  } else {
    TORCH_CHECK(input.dim() == 3, op, ": input must be 3-D [seq_len, batch, input_size], got ",
                input.dim(), "-D");
  }

  // Weights: w_ih [G, I], w_hh [G, P], biases [G], w_hr [P, H].
  const int64_t gates = gate_count(cell);
  TORCH_CHECK(t.w_ih.dim() == 2 && t.w_ih.size(0) > 0 && t.w_ih.size(0) % gates == 0, op,
              ": w_ih must be 2-D [", gates, " * hidden_size, input_size], got ", t.w_ih.sizes());
  s.gates = t.w_ih.size(0);
  s.hidden = s.gates / gates;
  s.input = t.w_ih.size(1);
  TORCH_CHECK(input.size(-1) == s.input, op, ": input.size(-1) must equal w_ih.size(1) = ",
              s.input, ", got ", input.size(-1));
  s.projected = t.w_hr.has_value();
  TORCH_CHECK(!s.projected || cell_info(cell).cell_state, op, ": w_hr is only for the LSTM");
  if (s.projected) {
    const at::Tensor& w_hr = *t.w_hr;
    TORCH_CHECK(w_hr.dim() == 2 && w_hr.size(0) > 0 && w_hr.size(1) == s.hidden, op,
                ": w_hr must be 2-D [proj_size, hidden_size = ", s.hidden, "], got ", w_hr.sizes());
    check_same_kind(op, "w_hr", w_hr, input);
    s.output = w_hr.size(0);
  } else {
    s.output = s.hidden;
  }
  check_shape(op, "w_hh", t.w_hh, {s.gates, s.output});
  check_same_kind(op, "w_ih", t.w_ih, input);
  check_same_kind(op, "w_hh", t.w_hh, input);
  for (const auto& [name, bias] : {std::pair{"b_ih", &t.b_ih}, std::pair{"b_hh", &t.b_hh}}) {
    if (bias->has_value()) {
      check_shape(op, name, **bias, {s.gates});
      check_same_kind(op, name, **bias, input);
    }
  }

  // Sequence layout.
  if (s.packed) {
    const at::Tensor& bs = *t.batch_sizes;
    TORCH_CHECK(bs.dim() == 1 && bs.scalar_type() == at::kLong && bs.device().is_cpu(), op,
                ": batch_sizes must be a 1-D int64 CPU tensor, got ", bs.dim(), "-D ",
                bs.scalar_type(), " on ", bs.device());
    TORCH_CHECK(bs.size(0) > 0, op, ": batch_sizes must not be empty");
    const at::Tensor sizes = bs.contiguous();
    const int64_t* b = sizes.data_ptr<int64_t>();
    int64_t total = 0;
    for (int64_t i = 0; i < sizes.size(0); ++i) {
      TORCH_CHECK(b[i] > 0, op, ": batch_sizes must be positive, got batch_sizes[", i, "] = ",
                  b[i]);
      TORCH_CHECK(i == 0 || b[i] <= b[i - 1], op,
                  ": batch_sizes must be non-increasing (sequences sorted by length), got ",
                  b[i - 1], " then ", b[i], " at index ", i);
      total += b[i];
    }
    TORCH_CHECK(total == input.size(0), op, ": batch_sizes sum to ", total,
                " but input has ", input.size(0), " rows");
    s.steps = sizes.size(0);
    s.batch = b[0];
    s.rows = total;
  } else {
    s.steps = input.size(0);
    s.batch = input.size(1);
    s.rows = s.steps * s.batch;
  }

  if (t.hx.has_value()) {
    check_shape(op, "hx", *t.hx, {s.batch, s.output});
    check_same_kind(op, "hx", *t.hx, input);
  }
  TORCH_CHECK(!t.cx.has_value() || cell_info(cell).cell_state, op, ": cx is only for the LSTM");
  if (t.cx.has_value()) {
    check_shape(op, "cx", *t.cx, {s.batch, s.hidden});
    check_same_kind(op, "cx", *t.cx, input);
  }
  return s;
}

void check_like(const char* op, const char* name, const at::Tensor& tensor,
                at::IntArrayRef expected_shape, at::ScalarType dtype, at::Device device) {
  check_shape(op, name, tensor, expected_shape);
  TORCH_CHECK(tensor.scalar_type() == dtype && tensor.device() == device, op, ": expected ", name,
              " of dtype ", dtype, " on ", device, ", got ", tensor.scalar_type(), " on ",
              tensor.device());
}

std::vector<int64_t> sequence_shape(const LayerSizes& sizes, int64_t features) {
  if (sizes.packed) return {sizes.rows, features};
  return {sizes.steps, sizes.batch, features};
}

}  // namespace fastrnn::ops
