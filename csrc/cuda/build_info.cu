#include "cuda/build_info.h"

// Variadic: __CUDA_ARCH_LIST__ expands to a comma-separated list.
#define FASTRNN_STRINGIFY_ARGS(...) #__VA_ARGS__
#define FASTRNN_STRINGIFY(...) FASTRNN_STRINGIFY_ARGS(__VA_ARGS__)

namespace fastrnn::cuda {

const char* nvcc_version() {
  return FASTRNN_STRINGIFY(__CUDACC_VER_MAJOR__) "." FASTRNN_STRINGIFY(__CUDACC_VER_MINOR__) "."
      FASTRNN_STRINGIFY(__CUDACC_VER_BUILD__);
}

const char* compiled_archs() {
#ifdef __CUDA_ARCH_LIST__  // nvcc 11.5 and later
  return FASTRNN_STRINGIFY(__CUDA_ARCH_LIST__);
#else
  return "";
#endif
}

}  // namespace fastrnn::cuda
