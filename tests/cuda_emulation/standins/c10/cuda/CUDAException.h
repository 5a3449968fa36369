// Stand-in for torch's c10/cuda/CUDAException.h (tier 2): C10_CUDA_CHECK as torch's.
#pragma once

#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

#define C10_CUDA_CHECK(EXPR)                                                              \
  do {                                                                                    \
    const cudaError_t fastrnn_error = (EXPR);                                             \
    TORCH_CHECK(fastrnn_error == cudaSuccess, "CUDA error: ",                             \
                cudaGetErrorString(fastrnn_error));                                       \
  } while (0)
