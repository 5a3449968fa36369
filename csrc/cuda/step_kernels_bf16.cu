// The CUDA step kernels for storage type __nv_bfloat16 (see step_kernels.cuh): one file per type so the
// four build in parallel.
#include "cuda/step_kernels.cuh"

namespace fastrnn::cuda {
FASTRNN_INSTANTIATE_CUDA_STEPS(__nv_bfloat16)
FASTRNN_INSTANTIATE_CUDA_CONVERSIONS(__nv_bfloat16)
}  // namespace fastrnn::cuda
