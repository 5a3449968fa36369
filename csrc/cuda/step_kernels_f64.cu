// The CUDA step kernels for storage type double (see step_kernels.cuh): one file per type so the
// four build in parallel.
#include "cuda/step_kernels.cuh"

namespace fastrnn::cuda {
FASTRNN_INSTANTIATE_CUDA_STEPS(double)
}  // namespace fastrnn::cuda
