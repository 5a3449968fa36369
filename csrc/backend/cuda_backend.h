// The recurrence driver's Backend on CUDA (fastrnn/recurrence.h): cuBLAS GEMMs on torch's handle
// and the current stream (half types multiply in float32 and may write float32 results), the
// pointwise step kernels of csrc/cuda, async copies, scratch from torch's caching allocator.
// Nothing synchronizes with the host. Used by ops/cuda/cuda_ops.cpp (and, over stand-in CUDA
// headers, by the emulated op path of tests/cuda_emulation).
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/Exceptions.h>
#include <c10/cuda/CUDAException.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "backend/torch_buffers.h"
#include "cuda/step_kernels.h"
#include "fastrnn/cells.h"
#include "fastrnn/debug.h"
#include "fastrnn/recurrence.h"

namespace fastrnn::backend {

// torch's element types and the CUDA types the kernels use for them (same bits).
template <class T> struct DeviceType { using type = T; };
template <> struct DeviceType<at::Half> { using type = __half; };
template <> struct DeviceType<at::BFloat16> { using type = __nv_bfloat16; };

template <class U> constexpr at::ScalarType scalar_type_of() {
  if constexpr (std::is_same_v<U, float>) return at::kFloat;
  else if constexpr (std::is_same_v<U, double>) return at::kDouble;
  else if constexpr (std::is_same_v<U, __half>) return at::kHalf;
  else return at::kBFloat16;
}

template <class U> constexpr cudaDataType_t cuda_type_of() {
  if constexpr (std::is_same_v<U, float>) return CUDA_R_32F;
  else if constexpr (std::is_same_v<U, double>) return CUDA_R_64F;
  else if constexpr (std::is_same_v<U, __half>) return CUDA_R_16F;
  else return CUDA_R_16BF;
}

inline int as_int(int64_t value, const char* what) {
  TORCH_CHECK(value <= INT_MAX, "fastrnn: ", what, " = ", value, " exceeds cuBLAS's int range");
  return static_cast<int>(value);
}

template <class Storage>
class CudaBackend {
 public:
  using T = Storage;
  using A = cuda::acc_t<T>;
  // One chunk: whole-sequence GEMMs as large as they come (the GPU wants them large).
  static constexpr int64_t kChunkRows = INT64_MAX;

  explicit CudaBackend(const at::TensorOptions& options)
      : options_(options), stream_(at::cuda::getCurrentCUDAStream()) {}

  // Row-major C = op(A) op(B) (+ C) is column-major C^T = op(B)^T op(A)^T: swap the operands.
  template <class Out>
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
            const T* b, int64_t ldb, bool accumulate, Out* c, int64_t ldc) const {
    if (m == 0 || n == 0) return;
    cublasHandle_t handle = at::cuda::getCurrentCUDABlasHandle();  // bound to stream_
    const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int cm = as_int(n, "n"), cn = as_int(m, "m"), ck = as_int(k, "k");
    const int lb = as_int(ldb, "ldb"), la = as_int(lda, "lda"), lc = as_int(ldc, "ldc");
    if constexpr (std::is_same_v<T, double>) {
      const double alpha = 1, beta = accumulate ? 1 : 0;
      TORCH_CUDABLAS_CHECK(cublasGemmEx(handle, op_b, op_a, cm, cn, ck, &alpha, b, CUDA_R_64F, lb,
                                        a, CUDA_R_64F, la, &beta, c, CUDA_R_64F, lc,
                                        CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT));
    } else {
      // float32 accumulation always; TF32 for float32 inputs only where torch allows it.
      const cublasComputeType_t compute =
          std::is_same_v<T, float> && at::globalContext().allowTF32CuBLAS()
              ? CUBLAS_COMPUTE_32F_FAST_TF32
              : CUBLAS_COMPUTE_32F;
      const float alpha = 1, beta = accumulate ? 1 : 0;
      TORCH_CUDABLAS_CHECK(cublasGemmEx(handle, op_b, op_a, cm, cn, ck, &alpha, b,
                                        cuda_type_of<T>(), lb, a, cuda_type_of<T>(), la, &beta, c,
                                        cuda_type_of<Out>(), lc, compute, CUBLAS_GEMM_DEFAULT));
    }
  }

  template <class U>
  using Buffer = backend::TensorBuffer<U>;

  // Scratch from torch's caching allocator (NaN-filled under FASTRNN_DEBUG_POISON=1).
  template <class U>
  Buffer<U> scratch(int64_t elements) const {
    at::Tensor buffer = at::empty({elements}, options_.dtype(scalar_type_of<U>()));
    if (debug_poison()) buffer.fill_(NAN);
    return {buffer};
  }

  template <class Dst, class Src>
  void copy(Dst* dst, const Src* src, int64_t n) const {
    if (n <= 0) return;
    if constexpr (std::is_same_v<Dst, Src>) {
      C10_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(Dst) * n, cudaMemcpyDeviceToDevice, stream_));
    } else {
      C10_CUDA_CHECK(cuda::convert(dst, src, n, stream_));
    }
  }

  void copy_rows(const T* src, int64_t src_ld, T* dst, int64_t dst_ld, int64_t rows,
                 int64_t cols) const {
    if (rows <= 0 || cols <= 0) return;
    C10_CUDA_CHECK(cudaMemcpy2DAsync(dst, sizeof(T) * dst_ld, src, sizeof(T) * src_ld,
                                     sizeof(T) * cols, rows, cudaMemcpyDeviceToDevice, stream_));
  }

  void add(T* out, const T* a, const A* b, int64_t n) const {
    C10_CUDA_CHECK(cuda::add(out, a, b, n, stream_));
  }

  void sum_rows(const T* matrix, int64_t rows, int64_t cols, T* out, bool accumulate) const {
    backend::torch_sum_rows(options_.dtype(scalar_type_of<T>()), matrix, rows, cols, out,
                            accumulate);
  }

  template <CellKind kCell, class Step>
  void step(const Step& s) const {
    C10_CUDA_CHECK((cuda::step<kCell, T>(s, stream_)));
  }

  // A step's recurrent GEMM (cuBLAS), then its step kernel.
  template <CellKind kCell>
  UnfusedWeights<T> prepare_forward(const LayerWeights<T>& w, int64_t /*rows*/,
                                    int64_t /*steps*/) const {
    return UnfusedWeights<T>::template of<kCell>(w);
  }
  template <CellKind kCell, class Step>
  void forward_step(const Step& step, Rows<const T> h_prev, Rows<const T> /*x*/,
                    const UnfusedWeights<T>& w, A* hh, bool /*training*/) const {
    gemm_then_step<kCell>(*this, step, h_prev, w.w_hh, w.gates, w.inner, hh);
  }
  // dh[:, c0:c1] (+)= dgates W_hh[:, c0:c1] (cuBLAS), and the backward iterations in order.
  void hidden_grad(int64_t rows, Rows<const T> dgates, const T* w_hh, int64_t G, int64_t P,
                   Rows<A> dh, int64_t c0, int64_t c1, bool accumulate) const {
    gemm(false, false, rows, c1 - c0, G, dgates.data, dgates.ld, w_hh + c0, P, accumulate,
         dh.data + c0, dh.ld);
  }
  template <CellKind kCell, class Pointwise, class Recurrent>
  void backward_steps(int64_t k0, int64_t k1, const Pointwise& pointwise,
                      const Recurrent& recurrent, int64_t units, int64_t columns,
                      bool /*splittable*/, int64_t /*flops_per_step*/) const {
    run_backward_in_order(k0, k1, pointwise, recurrent, units, columns);
  }

  template <CellKind kCell, class StepAt>
  void forward_steps(int64_t steps, const StepAt& step_at, const UnfusedWeights<T>& w, A* hh,
                     bool training) const {
    run_steps_in_order<kCell>(*this, steps, step_at, w, hh, training);
  }

 private:
  at::TensorOptions options_;
  cudaStream_t stream_;
};

}  // namespace fastrnn::backend
