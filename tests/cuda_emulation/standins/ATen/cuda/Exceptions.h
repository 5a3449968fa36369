// Stand-in for torch's ATen/cuda/Exceptions.h (tier 2): TORCH_CUDABLAS_CHECK as torch's, a
// RuntimeError naming the status.
#pragma once

#include <c10/util/Exception.h>

#include "emulated_cublas.h"

#define TORCH_CUDABLAS_CHECK(EXPR)                                                       \
  do {                                                                                   \
    const cublasStatus_t fastrnn_status = (EXPR);                                        \
    TORCH_CHECK(fastrnn_status == CUBLAS_STATUS_SUCCESS, "CUDA error: ",                 \
                cublasGetStatusName(fastrnn_status), " when calling `" #EXPR "`");       \
  } while (0)
