// What the torch-based backends (cpu/cpu_backend.h, backend/cuda_backend.h) share on top of the
// torch-free recurrence driver (fastrnn/recurrence.h): scratch held by a tensor, and column sums
// by torch's own reduction.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace fastrnn::backend {

// The driver's Backend::Buffer<U>: a tensor (from the backend's allocator) and its elements; a
// default-constructed one holds nothing.
template <class U>
struct TensorBuffer {
  at::Tensor tensor;
  U* data() const { return tensor.defined() ? static_cast<U*>(tensor.data_ptr()) : nullptr; }
};

// Column sums of a [rows, cols] matrix into (or added to) out [cols], by torch's reduction (the
// bias gradients, bitwise torch.nn's); `options` give the matrix's dtype and device.
template <class T>
void torch_sum_rows(const at::TensorOptions& options, const T* matrix, int64_t rows, int64_t cols,
                    T* out, bool accumulate) {
  at::Tensor result = at::from_blob(out, {cols}, options);
  const at::Tensor m = at::from_blob(const_cast<T*>(matrix), {rows, cols}, options);
  if (accumulate) {
    result.add_(m.sum(0));
  } else {
    at::sum_out(result, m, {0});
  }
}

}  // namespace fastrnn::backend
