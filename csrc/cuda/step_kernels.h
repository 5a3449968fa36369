// Launchers of fastrnn's CUDA step kernels: one fused pointwise pass per time step (arguments
// and their shapes: fastrnn/steps.h), plus the two elementwise helpers the recurrence needs.
// Torch-free: raw pointers, sizes and a cudaStream_t, so nvcc compiles these files without
// torch. Each launcher enqueues on `stream` and returns the launch's error code. Storage types
// T: float, double, __half, __nv_bfloat16; A = acc_t<T>: float for the half types, else T.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "fastrnn/cell_steps.h"
#include "fastrnn/cells.h"
#include "fastrnn/steps.h"

namespace fastrnn::cuda {

template <class T> struct Acc { using type = T; };
template <> struct Acc<__half> { using type = float; };
template <> struct Acc<__nv_bfloat16> { using type = float; };
template <class T> using acc_t = typename Acc<T>::type;

// Cell kCell's step structs on this storage type.
template <CellKind kCell, class T>
using CellForwardStep = typename CellSteps<kCell>::template ForwardStep<T, acc_t<T>>;
template <CellKind kCell, class T>
using CellBackwardStep = typename CellSteps<kCell>::template BackwardStep<T, acc_t<T>>;

// Cell kCell's step kernel, forward or backward, over the step's rows.
template <CellKind kCell, class T>
cudaError_t step(const CellForwardStep<kCell, T>& s, cudaStream_t stream);
template <CellKind kCell, class T>
cudaError_t step(const CellBackwardStep<kCell, T>& s, cudaStream_t stream);

// dst[i] = src[i], between a half type T and acc_t<T> = float (either direction).
template <class Dst, class Src>
cudaError_t convert(Dst* dst, const Src* src, int64_t n, cudaStream_t stream);

// out[i] = a[i] + b[i], computed in acc_t<T>.
template <class T>
cudaError_t add(T* out, const T* a, const acc_t<T>* b, int64_t n, cudaStream_t stream);

}  // namespace fastrnn::cuda
