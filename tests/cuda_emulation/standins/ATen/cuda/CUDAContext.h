// Stand-in for torch's ATen/cuda/CUDAContext.h in the emulated op path (tier 2): the current
// stream and cuBLAS handle csrc/ops/cuda/cuda_ops.cpp asks for. No device: the emulated kernels,
// cuBLAS and copies work on host memory.
#pragma once

#include <ATen/Context.h>

#include "emulated_cublas.h"

namespace at::cuda {

struct CUDAStream {
  operator cudaStream_t() const { return nullptr; }  // the default stream
};

inline CUDAStream getCurrentCUDAStream() { return {}; }
inline cublasHandle_t getCurrentCUDABlasHandle() { return nullptr; }

}  // namespace at::cuda
