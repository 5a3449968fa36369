// Argument checks and sizes of the layer ops, shared by every device's glue. Every check raises
// a c10::Error (RuntimeError in Python) that names the op and the offending argument, so bad
// input never reaches a kernel.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>

#include "fastrnn/cells.h"

namespace fastrnn::ops {

// Sizes of one layer-direction call. Sequence matrices have `rows` rows: steps * batch when
// padded ([T, B, F] inputs), sum(batch_sizes) when packed ([rows, F] inputs).
struct LayerSizes {
  int64_t steps = 0, batch = 0, rows = 0;
  int64_t input = 0, hidden = 0, output = 0, gates = 0;  // output: proj_size or hidden
  bool packed = false;
  bool projected = false;
};

struct LayerTensors {
  const at::Tensor& input;
  const std::optional<at::Tensor>& hx;  // absent: zeros
  const std::optional<at::Tensor>& cx;  // LSTM only; absent: zeros
  const at::Tensor& w_ih;
  const at::Tensor& w_hh;
  const std::optional<at::Tensor>& b_ih;
  const std::optional<at::Tensor>& b_hh;
  const std::optional<at::Tensor>& w_hr;  // LSTM only
  const std::optional<at::Tensor>& batch_sizes;
};

// Checks a forward call (and the forward arguments repeated in a backward call) and returns its
// sizes. `op` names the op in messages.
LayerSizes check_layer(const char* op, CellKind cell, const LayerTensors& t);

// Checks that a gradient or saved tensor has the expected shape, dtype and device.
void check_like(const char* op, const char* name, const at::Tensor& tensor,
                at::IntArrayRef expected_shape, at::ScalarType dtype, at::Device device);

// Shape of a sequence matrix with `features` columns: [T, B, F] padded, [rows, F] packed.
std::vector<int64_t> sequence_shape(const LayerSizes& sizes, int64_t features);

}  // namespace fastrnn::ops
