// The CUDA step kernels for storage type __half (see step_kernels.cuh): one file per type so the
// four build in parallel.
#include "cuda/step_kernels.cuh"

namespace fastrnn::cuda {
FASTRNN_INSTANTIATE_CUDA_STEPS(__half)
FASTRNN_INSTANTIATE_CUDA_CONVERSIONS(__half)
}  // namespace fastrnn::cuda
