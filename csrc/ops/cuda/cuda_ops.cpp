// CUDA implementations of the layer ops: the device half of layer_ops.h. The recurrence driver
// (fastrnn/recurrence.h) runs on a CudaBackend (backend/cuda_backend.h). Nothing synchronizes
// with the host: batch_sizes already live on the CPU, so forward and backward can be captured in
// a CUDA graph.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "backend/cuda_backend.h"
#include "ops/layer_ops.h"
#include "ops/run_layer.h"

namespace fastrnn::ops {
namespace {

using backend::CudaBackend;
using backend::DeviceType;

struct CudaDevice {
  static void check_dtype(const char* op, const at::Tensor& input) {
    const auto dtype = input.scalar_type();
    TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                    dtype == at::kBFloat16,
                op, ": the CUDA kernels support float32, float64, float16 and bfloat16, got ",
                dtype);
  }

  template <CellKind kCell>
  static void forward(const LayerCall& call, const ForwardOutputs& out) {
    const c10::cuda::CUDAGuard guard(call.input.device());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, call.input.scalar_type(),
                                    forward_op_name(kCell), [&] {
      using T = typename DeviceType<scalar_t>::type;
      run_forward<kCell>(CudaBackend<T>(call.input.options()), forward_of(kCell, call, out));
    });
  }

  template <CellKind kCell>
  static void backward(const LayerCall& call, const BackwardInputs& in,
                       const BackwardOutputs& out) {
    const c10::cuda::CUDAGuard guard(call.input.device());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, call.input.scalar_type(),
                                    backward_op_name(kCell), [&] {
      using T = typename DeviceType<scalar_t>::type;
      run_backward<kCell>(CudaBackend<T>(call.input.options()), call, in, out);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) { register_layer_ops<CudaDevice>(m); }

}  // namespace fastrnn::ops
