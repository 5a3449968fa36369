// FASTRNN_HOST_DEVICE: inline for the host compiler, __host__ __device__ for nvcc.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FASTRNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FASTRNN_HOST_DEVICE inline
#endif
