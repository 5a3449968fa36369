// GEMM for the CPU recurrence, callable inside the step loop without going through the torch
// dispatcher: the Fortran BLAS that libtorch_cpu carries (MKL's sgemm_/dgemm_ in the x86-64
// wheels) when it is there, else ATen's matmul (FASTRNN_CPU_BLAS=aten forces that fallback).
#pragma once

#include <cstdint>

#include "cpu/step_kernels.h"

namespace fastrnn::cpu {

// Row-major C[m, n] = alpha * op(A) op(B) + beta * C, with op(A) [m, k] and op(B) [k, n].
// A is stored [m, k] with leading dimension lda, or [k, m] when trans_a; B is [k, n] with ldb,
// or [n, k] when trans_b. beta == 0 overwrites C without reading it.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Row-major C [m, n] (+)= op(A) B with the micro-kernel of `kernels` (GemmBlock), in
// blocks of C split across torch's intra-op threads; op(A) as for gemm, B as stored. Backward's
// input and weight gradients run here where tiled_gemm_enabled: MKL's sgemm takes its AVX2
// code on AMD's AVX-512 cores, and ran those GEMMs' shapes (a 1024-row chunk of a GRU at
// H = I = 512) at 160-186 GFLOP/s on the development machine's two Zen 4 cores, against the
// micro-kernel's 185-211 (one core: 85-100 against 95-108).
void tiled_gemm(const StepKernels<float>& kernels, bool trans_a, int64_t m, int64_t n, int64_t k,
                const float* a, int64_t lda, const float* b, int64_t ldb, bool accumulate,
                float* c, int64_t ldc);

// Whether the float GEMMs with B as stored take tiled_gemm: kernels with vectors (AVX2 or
// AVX-512), unless FASTRNN_CPU_GEMM=blas keeps them on gemm.
bool tiled_gemm_enabled(const StepKernels<float>& kernels);

// "blas" or "aten", for fastrnn.info.
const char* gemm_backend();

}  // namespace fastrnn::cpu
